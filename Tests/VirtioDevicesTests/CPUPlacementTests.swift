@testable import VirtioDevices
import XCTest

/// Where side cores and vCPUs go, and when a hybrid side core has a CPU of its own (the condition
/// for its poll window to grow past the floor).
final class CPUPlacementTests: XCTestCase {
    func configuration(_ mode: PollSchedule.Mode, count: Int = 1) -> SideCoreConfiguration {
        SideCoreConfiguration(mode: mode, count: count, pollMaxNanoseconds: 256_000)
    }

    func testOneVCPUOnTwoCPUsLeavesTheSideCoreItsOwnCPU() {
        let placement = CPUPlacement(sideCores: configuration(.hybrid), vcpuCount: 1, onlineCPUs: 2)
        XCTAssertEqual(placement.sideCoreCPUs, [1])
        XCTAssertEqual(placement.vcpuCPUs, [0])
        XCTAssertTrue(placement.sideCoresHaveTheirOwnCPUs)
    }

    /// Two vCPUs and one CPU left: in hybrid mode they may use the side core's CPU too, so its
    /// window must not grow into their time.
    func testVCPUsSharingTheSideCoresCPUTakeItsOwnCPUAway() {
        let placement = CPUPlacement(sideCores: configuration(.hybrid), vcpuCount: 2, onlineCPUs: 2)
        XCTAssertNil(placement.vcpuCPUs)
        XCTAssertFalse(placement.sideCoresHaveTheirOwnCPUs)
        let poll = CPUPlacement(sideCores: configuration(.poll), vcpuCount: 2, onlineCPUs: 2)
        XCTAssertEqual(poll.vcpuCPUs, [0], "poll mode keeps vCPUs off the side core whatever their number")
        XCTAssertTrue(poll.sideCoresHaveTheirOwnCPUs)
    }

    func testUnpinnedOrAbsentSideCoresHaveNoCPUOfTheirOwn() {
        var unpinned = configuration(.hybrid)
        unpinned.placement = .unpinned
        XCTAssertFalse(CPUPlacement(sideCores: unpinned, vcpuCount: 1, onlineCPUs: 4).sideCoresHaveTheirOwnCPUs)
        XCTAssertFalse(CPUPlacement(sideCores: nil, vcpuCount: 1, onlineCPUs: 4).sideCoresHaveTheirOwnCPUs)
        let single = CPUPlacement(sideCores: configuration(.hybrid), vcpuCount: 1, onlineCPUs: 1)
        XCTAssertFalse(single.sideCoresHaveTheirOwnCPUs, "one CPU: everything shares it")
    }
}
