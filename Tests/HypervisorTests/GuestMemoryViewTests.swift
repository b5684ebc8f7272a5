import Hypervisor
import XCTest

/// Views of guest RAM by offset: in range they read and write little-endian values; outside it
/// (what a wrong offset would be) they read 0 and write nothing instead of trapping.
final class GuestMemoryViewTests: XCTestCase {
    func testValuesRoundTripLittleEndianInsideTheView() throws {
        let memory = try GuestMemory(ranges: [(0, 1 << 16)])
        let view = try memory.view(at: 0x1000, length: 16)
        view.store(UInt32(0x1122_3344), at: 3)
        XCTAssertEqual(try memory.read(at: 0x1003, count: 4), [0x44, 0x33, 0x22, 0x11])
        XCTAssertEqual(view.load(UInt32.self, at: 3), 0x1122_3344)
        view.storeRelease(0xBEEF, at: 14)
        XCTAssertEqual(view.loadAcquire(UInt16.self, at: 14), 0xBEEF)
        XCTAssertEqual(try memory.load(UInt16.self, at: 0x100E), 0xBEEF)
    }

    func testAccessesPastTheEdgesReadZeroAndWriteNothing() throws {
        let memory = try GuestMemory(ranges: [(0, 1 << 16)])
        try memory.write([UInt8](repeating: 0xFF, count: 64), at: 0x2000 - 16)
        let view = try memory.view(at: 0x2000 - 8, length: 8)
        XCTAssertEqual(view.load(UInt64.self, at: 0), .max)
        for offset in [-1, 1, 8, Int.max, Int.min] {
            XCTAssertEqual(view.load(UInt64.self, at: offset), 0, "offset \(offset)")
            view.store(UInt64(0), at: offset)
            view.storeRelease(0, at: offset)
        }
        XCTAssertEqual(view.loadAcquire(UInt16.self, at: 7), 0, "straddles the end")
        XCTAssertEqual(view.loadAcquire(UInt16.self, at: 1), 0, "misaligned: no atomic access")
        XCTAssertEqual(
            try memory.read(at: 0x2000 - 16, count: 64), [UInt8](repeating: 0xFF, count: 64), "nothing written")
    }

    func testAViewMustLieInsideGuestRAM() throws {
        let memory = try GuestMemory(ranges: [(0, 1 << 16)])
        XCTAssertThrowsError(try memory.view(at: (1 << 16) - 4, length: 8))
        XCTAssertThrowsError(try memory.view(at: .max - 2, length: 8))
    }
}
