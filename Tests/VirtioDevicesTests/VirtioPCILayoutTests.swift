@testable import VirtioDevices
import XCTest

/// Which structure of BAR 0 an access lands in, at the edges of each.
final class VirtioPCILayoutTests: XCTestCase {
    func region(_ offset: UInt64) -> VirtioPCILayout.Region {
        VirtioPCILayout.region(at: offset, queueCount: 2, vectorCount: 3)
    }

    func testEachStructureStartsAndEndsWhereTheCapabilitiesSay() {
        XCTAssertEqual(region(0x00), .common(0))
        XCTAssertEqual(region(0x3F), .common(0x3F))
        XCTAssertEqual(region(0x40), .unused)
        XCTAssertEqual(region(0x1000), .isr)
        XCTAssertEqual(region(0x1001), .unused)
        XCTAssertEqual(region(0x20FF), .deviceConfiguration(0xFF))
        XCTAssertEqual(region(0x2100), .unused)
        XCTAssertEqual(region(0xC0FF), .msixPending(0xFF))
        XCTAssertEqual(region(0xC100), .unused)
    }

    func testDoorbellsAndVectorsExistOnlyForTheFunctionsQueues() {
        XCTAssertEqual(region(0x3000), .notify(queue: 0))
        XCTAssertEqual(region(0x3007), .notify(queue: 1))
        XCTAssertEqual(region(0x3008), .unused, "two queues, two doorbells")
        XCTAssertEqual(region(0x8000 + 3 * 16 - 1), .msixTable(47))
        XCTAssertEqual(region(0x8000 + 3 * 16), .unused, "three vectors, three table entries")
        XCTAssertEqual(region(.max), .unused)
        XCTAssertEqual(VirtioPCILayout.doorbellAddress(barAddress: 0xE000_0000, queue: 1), 0xE000_3004)
    }
}
