import Foundation
import Hypervisor
import TestSupport
@testable import VirtioDevices
import XCTest

/// The block queue handler on a real file through io_uring and on the null backend, driven as a
/// guest (and a hostile guest) would.
final class BlockQueueHandlerTests: XCTestCase {
    var path: String!
    var driver: FakeDriver!
    var device: BlockDevice!
    var handler: QueueHandler!

    func makeHandler(size: UInt16, null: Bool = false) throws {
        var configuration: BlockDeviceConfiguration
        if null {
            configuration = BlockDeviceConfiguration(path: nil, id: "test")
            configuration.backend = .null
            configuration.nullSizeInBytes = 1 << 20
        } else {
            path = NSTemporaryDirectory() + "sidecore-blk-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).img"
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(count: 1 << 20)))
            configuration = BlockDeviceConfiguration(path: path, id: "test")
        }
        device = try BlockDevice(configuration: configuration, name: "blk-test")
        driver = try FakeDriver(size: size, memoryInBytes: 8 << 20)
        let features = VirtioFeature.version1 | BlockDevice.featureDiscard | BlockDevice.featureWriteZeroes
        handler = try XCTUnwrap(
            device.activate(memory: driver.memory, features: features, queues: [try driver.context()]).first)
    }

    override func tearDown() {
        handler = nil
        device = nil
        if let path { unlink(path) }
    }

    /// Request `index`: header, then `payload` (readable unless `readInto`), then a status byte
    /// preset to 0xFF so a completion is visible. Uses descriptors 3·index ..< 3·index + 3.
    func postRequest(_ index: Int, type: UInt32, sector: UInt64 = 0, payload: [UInt8] = [], readInto length: UInt32 = 0)
        throws
    {
        let base = UInt64(0x100000 + index * 0x2000)
        let first = UInt16(3 * index)
        try driver.memory.store(type, at: base)
        try driver.memory.store(UInt32(0), at: base + 4)
        try driver.memory.store(sector, at: base + 8)
        try driver.memory.write(payload, at: base + 0x100)
        try driver.memory.store(UInt8(0xFF), at: statusAddress(index))
        try driver.setDescriptor(first, address: base, length: 16, flags: 1, next: first + 1)
        if length > 0 {
            try driver.setDescriptor(first + 1, address: base + 0x100, length: length, flags: 2 | 1, next: first + 2)
        } else {
            try driver.setDescriptor(
                first + 1, address: base + 0x100, length: UInt32(payload.count), flags: 1, next: first + 2)
        }
        try driver.setDescriptor(first + 2, address: statusAddress(index), length: 1, flags: 2)
        try driver.makeAvailable(first)
    }

    func statusAddress(_ index: Int) -> UInt64 { UInt64(0x100000 + index * 0x2000 + 0x1F00) }

    func testResetWithReadsInFlightReapsThemWithoutTouchingTheRings() throws {
        try makeHandler(size: 64)
        for index in 0..<16 {
            try postRequest(index, type: BlockRequest.typeIn, sector: UInt64(index * 8), readInto: 4096)
        }
        _ = handler.poll(budget: 32)  // submits them; their completions are reaped by the next poll
        device.reset()
        XCTAssertEqual(driver.usedIndex, 0, "nothing is returned to a ring the driver reset")
        for index in 0..<16 { XCTAssertEqual(try driver.memory.load(UInt8.self, at: statusAddress(index)), 0xFF) }
    }

    /// A request handed to io_uring is work for the kernel (its io-wq threads, which a side core
    /// polling on their CPU yields to) until a poll reaps it; the null backend never has any.
    func testRequestsInTheKernelAreReportedForTheSideCoreToYieldTo() throws {
        try makeHandler(size: 64)
        XCTAssertFalse(handler.awaitsKernelThreads, "nothing in flight")
        try postRequest(0, type: BlockRequest.typeOut, sector: 0, payload: Array(repeating: 7, count: 4096))
        _ = handler.poll(budget: 8)
        // A poll reaps before it submits, so the write it just submitted is still the kernel's.
        XCTAssertTrue(handler.awaitsKernelThreads, "submitted, not reaped")
        XCTAssertTrue(
            eventually {
                _ = handler.poll(budget: 8)
                return (try? driver.memory.load(UInt8.self, at: statusAddress(0))) == 0
            })
        XCTAssertFalse(handler.awaitsKernelThreads, "reaped and completed: nothing left in the kernel")

        try makeHandler(size: 64, null: true)
        try postRequest(0, type: BlockRequest.typeOut, sector: 0, payload: Array(repeating: 7, count: 4096))
        _ = handler.poll(budget: 8)
        XCTAssertFalse(handler.awaitsKernelThreads, "the null backend completes as it starts")
    }

    /// The wake descriptor of a file-backed queue is its io_uring: readable while a completion
    /// waits to be reaped (whatever the kicks are set to), and no longer once a poll reaped it.
    func testTheRingIsReadableWhileACompletionWaits() throws {
        try makeHandler(size: 16)
        let ring = try XCTUnwrap(handler.wakeDescriptors.last)
        func readable() -> Bool {
            var entry = pollfd(fd: ring, events: Int16(POLLIN), revents: 0)
            return poll(&entry, 1, 0) == 1
        }
        XCTAssertFalse(readable(), "nothing submitted")
        handler.setGuestNotifications(enabled: false)
        try postRequest(0, type: BlockRequest.typeIn, sector: 0, readInto: 4096)
        _ = handler.poll(budget: 32)  // submits; the completion is reaped by a later poll
        XCTAssertTrue(eventually { readable() }, "a completion wakes a sleeping executor")
        pollUntilUsed(1)
        XCTAssertEqual(driver.usedIndex, 1)
        XCTAssertFalse(readable(), "reaped: nothing left to wake for")
    }

    /// A VM's disk is free for the next VM as soon as the device is gone: the io_uring's
    /// registration of the file is dropped before the ring goes (its teardown in a kernel worker
    /// would otherwise hold the file, and with it the image's lock, a while longer).
    func testTheImageLockIsReleasedWithTheDevice() throws {
        for round in 0..<5 {
            try makeHandler(size: 16)
            try postRequest(0, type: BlockRequest.typeIn, sector: 0, readInto: 4096)
            pollUntilUsed(1)
            XCTAssertEqual(driver.usedIndex, 1)
            device.reset()  // as the VMM does when it stops: the queue's handler and ring go
            handler = nil
            device = nil
            XCTAssertNoThrow(
                try BlockDevice(configuration: BlockDeviceConfiguration(path: path, id: "test"), name: "again"),
                "round \(round): the image is still locked after its device went")
            unlink(path)
            path = nil
        }
    }

    func testDiscardsWithEveryRangeAllowedNeverOverflowTheRing() throws {
        try makeHandler(size: 64)
        // 21 requests × 32 ranges: 672 fallocates, several times the ring (128 entries).
        var segments: [UInt8] = []
        for range in 0..<32 {
            segments += withUnsafeBytes(of: UInt64(range * 16).littleEndian, Array.init)
            segments += withUnsafeBytes(of: UInt32(8).littleEndian, Array.init)
            segments += [0, 0, 0, 0]
        }
        for index in 0..<21 { try postRequest(index, type: BlockRequest.typeDiscard, payload: segments) }
        let deadline = Date().addingTimeInterval(10)
        while driver.usedIndex < 21 && Date() < deadline { _ = handler.poll(budget: 32) }
        XCTAssertEqual(driver.usedIndex, 21, "every discard completed")
        for index in 0..<21 {
            XCTAssertEqual(try driver.memory.load(UInt8.self, at: statusAddress(index)), BlockRequest.statusOK)
        }
    }

    /// Polls until `count` chains are used (at most 10 s).
    func pollUntilUsed(_ count: UInt16) {
        let deadline = Date().addingTimeInterval(10)
        while driver.usedIndex < count && Date() < deadline { _ = handler.poll(budget: 32) }
    }

    func testAWriteThenAReadOfTheSameSectorsRoundTripThroughTheFile() throws {
        try makeHandler(size: 16)
        let data = (0..<4096).map { UInt8(truncatingIfNeeded: $0 * 7 + 3) }
        try postRequest(0, type: BlockRequest.typeOut, sector: 16, payload: data)
        pollUntilUsed(1)
        try postRequest(1, type: BlockRequest.typeIn, sector: 16, readInto: 4096)
        pollUntilUsed(2)
        XCTAssertEqual(try driver.memory.load(UInt8.self, at: statusAddress(0)), BlockRequest.statusOK)
        XCTAssertEqual(try driver.memory.load(UInt8.self, at: statusAddress(1)), BlockRequest.statusOK)
        XCTAssertEqual(
            try driver.memory.read(at: 0x100000 + 0x2000 + 0x100, count: 4096), data, "read back what was written")
        let file = try XCTUnwrap(FileManager.default.contents(atPath: path))
        XCTAssertEqual(Array(file[(16 * 512)..<(16 * 512 + 4096)]), data, "the write reached the file")
    }

    func testTheNullBackendCompletesEveryRequestAtOnceWithoutTouchingTheData() throws {
        try makeHandler(size: 16, null: true)
        try driver.memory.write([UInt8](repeating: 0xAB, count: 4096), at: 0x100000 + 0x100)
        try postRequest(0, type: BlockRequest.typeIn, sector: 8, readInto: 4096)
        try postRequest(1, type: BlockRequest.typeOut, sector: 8, payload: [UInt8](repeating: 1, count: 512))
        try postRequest(2, type: BlockRequest.typeFlush)
        XCTAssertEqual(handler.poll(budget: 32), 3, "one poll takes and completes all three")
        XCTAssertEqual(driver.usedIndex, 3)
        for index in 0..<3 {
            XCTAssertEqual(try driver.memory.load(UInt8.self, at: statusAddress(index)), BlockRequest.statusOK)
        }
        XCTAssertEqual(try driver.memory.read(at: 0x100000 + 0x100, count: 4096), [UInt8](repeating: 0xAB, count: 4096))
        XCTAssertEqual(handler.wakeDescriptors.count, 1, "only the kick wakes a null queue")
    }

    func testGetIDWritesTheDeviceIDOnEitherBackend() throws {
        for null in [false, true] {
            try makeHandler(size: 16, null: null)
            try postRequest(0, type: BlockRequest.typeGetID, readInto: 20)
            pollUntilUsed(1)
            XCTAssertEqual(try driver.memory.load(UInt8.self, at: statusAddress(0)), BlockRequest.statusOK)
            XCTAssertEqual(
                try driver.memory.read(at: 0x100000 + 0x100, count: 20),
                Array("test".utf8) + [UInt8](repeating: 0, count: 16),
                null ? "null" : "file")
        }
    }
}
