import Foundation
import XCTest

/// Consecutive 2-vCPU Linux boots under hvctl in the nested rig, each reading both halves of a
/// 2-queue disk with O_DIRECT at once, one half per CPU, and checking them against the file
/// (guest-images/nested/boot-stress-l2.sh, the script nested/boot-stress runs for hvctl and QEMU).
/// Nothing is retried but a rig failure that is not a guest's (`NestedRig.ForeignFailure`).
final class NestedSMPStressTests: XCTestCase {
    static let boots = 5

    static let rigRun: Result<(sections: [String: NestedRig.Section], output: String), Error> = Result {
        try Toolchain.requireArtifacts()
        let script = Toolchain.repository.appendingPathComponent("guest-images/nested/boot-stress-l2.sh").path
        return try NestedRig.run(script: """
            echo "=== begin stress"
            BOOTS=\(boots) HYPERVISORS=hvctl BOOT_TIMEOUT=200 sh /boot-stress.sh
            echo "=== end stress status=$?"
            """, files: [script: "/boot-stress.sh"], timeoutInSeconds: 200 * boots + 300)
    }

    func testConsecutiveTwoVCPUBootsWithParallelDirectIOAllFinishWithTheirData() throws {
        let run = try Self.rigRun.get()
        let result = try XCTUnwrap(run.sections["stress"], "no stress output; the rig printed:\n\(run.output.suffix(4000))")
        let outcomes = result.output.components(separatedBy: "\n").filter { $0.hasPrefix("boot ") && !$0.contains(" start") }
        print("smp stress: \(outcomes.joined(separator: "; "))")
        XCTAssertEqual(outcomes.count, Self.boots, result.output)
        for outcome in outcomes {
            XCTAssertTrue(outcome.hasPrefix("boot ") && outcome.contains(" hvctl ok "), "\(outcome)\n\(result.output)")
        }
        XCTAssertTrue(result.output.contains("summary hvctl boots=\(Self.boots) ok=\(Self.boots) failures=0"), result.output)
    }
}
