import Hypervisor
@testable import VirtioDevices
import XCTest

final class BlockRequestTests: XCTestCase {
    let memory = try! GuestMemory(ranges: [(0, 1 << 20)])
    let headerAddress: UInt64 = 0x1000
    let statusAddress: UInt64 = 0x3000
    let allFeatures = BlockDevice.featureDiscard | BlockDevice.featureWriteZeroes

    func header(type: UInt32, sector: UInt64) throws -> VirtqueueBuffer {
        try memory.store(type, at: headerAddress)
        try memory.store(UInt32(0), at: headerAddress + 4)
        try memory.store(sector, at: headerAddress + 8)
        return VirtqueueBuffer(address: headerAddress, length: 16, isDeviceWritable: false)
    }

    var status: VirtqueueBuffer { VirtqueueBuffer(address: statusAddress, length: 1, isDeviceWritable: true) }

    func parse(_ buffers: [VirtqueueBuffer], capacity: UInt64 = 100, readOnly: Bool = false) -> Result<
        BlockRequest, BlockRequest.Refusal
    > {
        BlockRequest.parse(
            DescriptorChain(head: 0, buffers: BufferList(buffers)), memory: memory, capacityInSectors: capacity,
            readOnly: readOnly, features: allFeatures)
    }

    func testReadWithinCapacity() throws {
        let data = VirtqueueBuffer(address: 0x8000, length: 4096, isDeviceWritable: true)
        let request = try parse([try header(type: 0, sector: 92), data, status]).get()
        XCTAssertEqual(request.kind, .read(sector: 92, buffers: [data]))
        XCTAssertEqual(request.statusAddress, statusAddress)
        XCTAssertEqual(request.dataLength, 4096)
    }

    func testStatusByteSharedWithTheLastDataBuffer() throws {
        let combined = VirtqueueBuffer(address: 0x8000, length: 513, isDeviceWritable: true)
        let request = try parse([try header(type: 0, sector: 0), combined]).get()
        XCTAssertEqual(
            request.kind,
            .read(sector: 0, buffers: [VirtqueueBuffer(address: 0x8000, length: 512, isDeviceWritable: true)]))
        XCTAssertEqual(request.statusAddress, 0x8200)
    }

    /// More buffers than a BufferList holds inline: the payload keeps every one, in order.
    func testAReadScatteredOverManyBuffers() throws {
        let data = (0..<6).map {
            VirtqueueBuffer(address: 0x8000 + 0x1000 * UInt64($0), length: 512, isDeviceWritable: true)
        }
        let request = try parse([try header(type: 0, sector: 10)] + data + [status]).get()
        XCTAssertEqual(request.kind, .read(sector: 10, buffers: BufferList(data)))
        XCTAssertEqual(request.dataLength, 3072)
    }

    func testBeyondCapacityIsAnIOError() throws {
        let data = VirtqueueBuffer(address: 0x8000, length: 4096, isDeviceWritable: true)
        XCTAssertEqual(
            try XCTUnwrap(parse([try header(type: 0, sector: 93), data, status]).failure),
            .init(rejection: .ioError, statusAddress: statusAddress))
        XCTAssertEqual(
            try XCTUnwrap(parse([try header(type: 0, sector: UInt64.max), data, status]).failure)?.rejection, .ioError,
            "sector overflow")
    }

    func testPartialSectorIsAnIOError() throws {
        let data = VirtqueueBuffer(address: 0x8000, length: 100, isDeviceWritable: true)
        XCTAssertEqual(
            try XCTUnwrap(parse([try header(type: 0, sector: 0), data, status]).failure)?.rejection, .ioError)
    }

    func testWriteToReadOnlyDiskIsRefused() throws {
        let data = VirtqueueBuffer(address: 0x8000, length: 512, isDeviceWritable: false)
        XCTAssertEqual(
            try XCTUnwrap(parse([try header(type: 1, sector: 0), data, status], readOnly: true).failure)?.rejection,
            .ioError)
        XCTAssertNoThrow(try parse([try header(type: 1, sector: 0), data, status]).get())
    }

    func testWriteWithDeviceWritableDataIsMalformed() throws {
        let data = VirtqueueBuffer(address: 0x8000, length: 512, isDeviceWritable: true)
        XCTAssertEqual(
            try XCTUnwrap(parse([try header(type: 1, sector: 0), data, status]).failure)?.rejection, .ioError)
    }

    func testMissingStatusByte() throws {
        XCTAssertEqual(
            try XCTUnwrap(parse([try header(type: 0, sector: 0)]).failure),
            .init(rejection: .noStatusByte, statusAddress: nil))
    }

    func testShortHeaderIsAnIOError() throws {
        let short = VirtqueueBuffer(address: headerAddress, length: 8, isDeviceWritable: false)
        XCTAssertEqual(try XCTUnwrap(parse([short, status]).failure)?.rejection, .ioError)
    }

    /// The header read in place (its first buffer holds it) and gathered (split across buffers,
    /// with the data after it in the last one) gives the same request.
    func testAHeaderSplitAcrossBuffersReadsAsOneInPlace() throws {
        let whole = try header(type: 1, sector: 24)
        let data = VirtqueueBuffer(address: 0x8000, length: 512, isDeviceWritable: false)
        let inPlace = try parse([whole, data, status]).get()
        let split = try parse([
            VirtqueueBuffer(address: headerAddress, length: 5, isDeviceWritable: false),
            VirtqueueBuffer(address: headerAddress + 5, length: 11, isDeviceWritable: false), data, status,
        ]).get()
        XCTAssertEqual(inPlace, split)
        XCTAssertEqual(inPlace.kind, .write(sector: 24, buffers: [data]))
    }

    /// A header whose 16 bytes run past the end of guest RAM is refused, not read beyond it.
    func testAHeaderRunningOutOfGuestMemoryIsAnIOError() throws {
        let edge = VirtqueueBuffer(address: (1 << 20) - 8, length: 16, isDeviceWritable: false)
        XCTAssertEqual(try XCTUnwrap(parse([edge, status]).failure)?.rejection, .ioError)
        let wrapping = VirtqueueBuffer(address: UInt64.max - 7, length: 16, isDeviceWritable: false)
        XCTAssertEqual(try XCTUnwrap(parse([wrapping, status]).failure)?.rejection, .ioError)
    }

    func testUnknownTypeIsUnsupported() throws {
        XCTAssertEqual(
            try XCTUnwrap(parse([try header(type: 99, sector: 0), status]).failure)?.rejection, .unsupported)
    }

    func testDiscardSegments() throws {
        let segments: UInt64 = 0x5000
        try memory.store(UInt64(8), at: segments)
        try memory.store(UInt32(16), at: segments + 8)
        try memory.store(UInt32(0), at: segments + 12)
        let segment = VirtqueueBuffer(address: segments, length: 16, isDeviceWritable: false)
        let request = try parse([try header(type: 11, sector: 0), segment, status]).get()
        guard case .discard(let ranges) = request.kind else { return XCTFail("discard expected") }
        XCTAssertEqual(ranges.map(\.sector), [8])
        XCTAssertEqual(ranges.map(\.count), [16])
        try memory.store(UInt32(200), at: segments + 8)
        XCTAssertEqual(
            try XCTUnwrap(parse([try header(type: 11, sector: 0), segment, status]).failure)?.rejection, .ioError,
            "past capacity")
        try memory.store(UInt32(1), at: segments + 8)
        try memory.store(UInt32(1), at: segments + 12)
        XCTAssertEqual(
            try XCTUnwrap(parse([try header(type: 11, sector: 0), segment, status]).failure)?.rejection, .unsupported,
            "unmap flag on discard")
        let zeroes = try parse([try header(type: 13, sector: 0), segment, status]).get()
        XCTAssertEqual(zeroes.kind, .writeZeroes(ranges: [(8, 1)], unmap: true))
    }
}

extension Result {
    var failure: Failure? { if case .failure(let error) = self { return error } else { return nil } }
}
