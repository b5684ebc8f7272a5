import CKVM
@testable import Hypervisor
import XCTest

/// The per-vCPU ring of recent exits that hvctl prints after a triple fault or a stop by signal.
final class ExitHistoryTests: XCTestCase {
    func testTheRingKeepsTheLastExitsOldestFirstAndCountsAll() {
        var history = ExitHistory(capacity: 3)
        for port in 1...5 {
            history.record(
                RecordedExit(
                    reason: UInt32(KVM_EXIT_IO), address: UInt64(port), size: 1, isWrite: true, value: 7, time: 0))
        }
        XCTAssertEqual(history.entries.map(\.address), [3, 4, 5])
        XCTAssertEqual(history.total, 5)
    }

    func testDescriptionsNameTheAccessAndItsAge() {
        var history = ExitHistory(capacity: 4)
        history.record(
            RecordedExit(reason: UInt32(KVM_EXIT_IO), address: 0x3f8, size: 1, isWrite: true, value: 0x41, time: 1_000))
        history.record(RecordedExit(reason: UInt32(KVM_EXIT_MMIO), address: 0xd000_0000, size: 4, time: 2_000))
        history.record(RecordedExit(reason: UInt32(KVM_EXIT_SHUTDOWN), time: 3_000))
        XCTAssertEqual(
            history.describe(now: 11_000),
            [
                "-10 us io out port 0x3f8 size 1 = 0x41",
                "-9 us mmio read 0xd0000000 size 4",
                "-8 us shutdown (triple fault)",
            ])
    }
}
