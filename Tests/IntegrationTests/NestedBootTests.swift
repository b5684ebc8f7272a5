import Foundation
import XCTest

/// Boots the default guest under hvctl inside the nested rig (real KVM on emulated SVM), once for
/// the whole class: bzImage and PVH, 1 and 2 vCPUs, a guest script's output and status, poweroff,
/// reboot, panic and SIGTERM exit statuses, a graceful shutdown through the ACPI power button,
/// the --stats-json document, and consecutive 2-vCPU
/// boots with parallel direct I/O (guest-images/nested/boot-stress-l2.sh, the script
/// nested/boot-stress runs for hvctl and QEMU).
final class NestedBootTests: XCTestCase {
    static let reportScript = "echo report:cpus=$(grep -c ^processor /proc/cpuinfo); exit 7"
    static let stressBoots = 5
    /// What a graceful shutdown gives the guest before the hard stop; a guest that handles the
    /// button is down in seconds, even under TCG.
    static let powerButtonTimeout = 120
    static let buttonScript = "echo waiting-for-button; sleep 600; echo not-stopped"
    /// Failures the stress may boot again, signatures QEMU's guests share in this rig
    /// (docs/smp-reliability.md): a triple fault, and a hang whose vCPU holds L2's CR3 or CR2
    /// (TCG's emulated SVM leaking L2 state into the guest). Every other failure fails the test.
    static let stressRigFailureRepeats = 3

    /// One rig run covering every scenario; each prints `=== begin NAME` ... `=== end NAME status=N`.
    static let rigRun: Result<(sections: [String: NestedRig.Section], output: String), Error> = Result {
        try Toolchain.requireArtifacts()
        func boot(_ name: String, kernel: String, cpus: Int, script: String, extra: String = "") -> String {
            """
            echo "=== begin \(name)"
            hvctl run --kernel /guest/\(kernel) --initrd /guest/initramfs.cpio --cpus \(cpus) \
            --cmdline '\(NestedRig.guestCommandLine(running: script))' \
            \(extra)
            st=$?; echo "nested-rig: expect === end \(name) status=" > /dev/ttyS1
            echo "=== end \(name) status=$st"
            """
        }
        let script = [
            boot(
                "bzimage-1", kernel: "bzImage", cpus: 1, script: reportScript,
                extra: "--stats-json /tmp/stats.json --stats"),
            "echo '=== begin stats-json'; cat /tmp/stats.json; echo '=== end stats-json status=0'",
            boot("bzimage-2", kernel: "bzImage", cpus: 2, script: reportScript),
            boot("pvh-1", kernel: "vmlinux", cpus: 1, script: reportScript),
            boot("pvh-2", kernel: "vmlinux", cpus: 2, script: reportScript),
            boot("reboot", kernel: "bzImage", cpus: 1, script: "echo rebooting; reboot -f"),
            boot("panic", kernel: "vmlinux", cpus: 1, script: "echo c > /proc/sysrq-trigger"),
            """
            echo "=== begin sigterm"
            hvctl run --kernel /guest/bzImage --initrd /guest/initramfs.cpio --cmdline '\(NestedRig.guestCommandLine)' \
                --stats-json /tmp/sigterm.json >/tmp/sigterm.log 2>&1 &
            pid=$!
            # The signal goes to a running guest: once its userspace said so (at most 120 s).
            i=0; while ! grep -q "sidecore-guest: ready" /tmp/sigterm.log && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); \
            done
            kill -TERM $pid; wait $pid; st=$?
            cat /tmp/sigterm.log
            # The guest may have been stopped mid-line: what follows goes on lines of their own.
            echo; echo "stats-json $(cat /tmp/sigterm.json 2>/dev/null)"
            echo "=== end sigterm status=$st"
            """,
            """
            echo "=== begin power-button"
            hvctl run --kernel /guest/bzImage --initrd /guest/initramfs.cpio \
                --cmdline '\(NestedRig.guestCommandLine(running: buttonScript))' \
                --api-socket /tmp/api.sock --stats-json /tmp/button.json >/tmp/button.log 2>&1 &
            pid=$!
            i=0; while ! grep -q "waiting-for-button" /tmp/button.log && [ $i -lt 600 ]; do sleep 0.2; i=$((i+1)); done
            hvctl shutdown --socket /tmp/api.sock --graceful --timeout \(powerButtonTimeout); echo "client status=$?"
            wait $pid; st=$?
            cat /tmp/button.log
            echo; echo "stats-json $(cat /tmp/button.json 2>/dev/null)"
            echo "nested-rig: expect === end power-button status=" > /dev/ttyS1
            echo "=== end power-button status=$st"
            """,
            """
            echo "=== begin smp-stress"
            BOOTS=\(stressBoots) HYPERVISORS=hvctl BOOT_TIMEOUT=200 TF_REPEATS=\(stressRigFailureRepeats) sh \
            /boot-stress.sh
            echo "=== end smp-stress status=$?"
            """,
        ].joined(separator: "\n")
        let stress = Toolchain.repository.appendingPathComponent("guest-images/nested/boot-stress-l2.sh").path
        let stressSeconds = 200 * (stressBoots + stressRigFailureRepeats)
        return try NestedRig.run(
            script: script, files: [stress: "/boot-stress.sh"], timeoutInSeconds: 650 + stressSeconds)
    }

    func section(_ name: String) throws -> NestedRig.Section {
        let run = try Self.rigRun.get()
        return try XCTUnwrap(run.sections[name], "no output for \(name); the rig printed:\n\(run.output.suffix(3000))")
    }

    func assertReported(_ name: String, cpus: Int) throws {
        let result = try section(name)
        XCTAssertEqual(result.status, 0, "guest poweroff makes hvctl exit 0\n\(result.output)")
        XCTAssertTrue(result.output.contains("sidecore-guest: ready"), result.output)
        XCTAssertTrue(
            result.output.contains("report:cpus=\(cpus)"), "the guest brought up \(cpus) CPUs\n\(result.output)")
        XCTAssertTrue(result.output.contains("sidecore-guest: exit 7"), result.output)
    }

    func testBzImageOneVCPU() throws { try assertReported("bzimage-1", cpus: 1) }
    func testBzImageTwoVCPUs() throws { try assertReported("bzimage-2", cpus: 2) }
    func testPVHOneVCPU() throws { try assertReported("pvh-1", cpus: 1) }
    func testPVHTwoVCPUs() throws { try assertReported("pvh-2", cpus: 2) }

    func testRebootExitsWithStatus2() throws {
        let result = try section("reboot")
        XCTAssertTrue(result.output.contains("rebooting"), result.output)
        XCTAssertEqual(result.status, 2)
    }

    func testPanicRebootsInsteadOfHanging() throws {
        let result = try section("panic")
        XCTAssertTrue(result.output.contains("Kernel panic"), result.output)
        XCTAssertEqual(result.status, 2)
    }

    /// Status 143 alone cannot tell a clean stop from a kill: hvctl also wrote its statistics,
    /// naming the signal, and where each vCPU was.
    func testSIGTERMStopsTheVMAndWritesItsStatistics() throws {
        let result = try section("sigterm")
        XCTAssertEqual(result.status, 128 + 15, result.output)
        XCTAssertTrue(result.output.contains("sidecore-guest: ready"), "the guest was running\n\(result.output)")
        let json = try XCTUnwrap(result.value("stats-json"), result.output)
        let document = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any], json)
        XCTAssertEqual(document["exit"] as? String, "signal 15")
        XCTAssertEqual((document["vcpus"] as? [[String: Any]])?.count, 1)
        XCTAssertTrue(
            result.output.contains("hvctl: vcpu0:"), "the vCPU's state is reported on a signal\n\(result.output)")
    }

    /// Every boot finishes with its data read back right on both CPUs; the rig's failures are
    /// booted again only as `stressRigFailureRepeats` allows, and each repeat is printed.
    func testConsecutiveTwoVCPUBootsWithParallelDirectIOAllFinishWithTheirData() throws {
        let result = try section("smp-stress")
        let lines = result.output.components(separatedBy: "\n")
        for repeated in lines where repeated.contains(" repeated: ") { print("smp stress: \(repeated)") }
        let outcomes = lines.filter { $0.hasPrefix("boot ") && !$0.hasSuffix(" start") && !$0.contains(" repeated: ") }
        print("smp stress: \(outcomes.joined(separator: "; "))")
        XCTAssertEqual(outcomes.count, Self.stressBoots, result.output)
        for outcome in outcomes {
            XCTAssertTrue(outcome.contains(" hvctl ok "), "\(outcome)\n\(result.output)")
        }
        XCTAssertTrue(
            result.output.contains("summary hvctl boots=\(Self.stressBoots) ok=\(Self.stressBoots) failures=0"),
            result.output)
    }

    /// `hvctl shutdown --graceful`: the ACPI power button reaches Linux through the Generic Event
    /// Device, acpid in the guest powers it off, and the run ends as a guest poweroff before the
    /// deadline's hard stop.
    func testGracefulShutdownPowersTheGuestOffThroughItsPowerButton() throws {
        let result = try section("power-button")
        XCTAssertTrue(result.output.contains("client status=0"), result.output)
        XCTAssertTrue(result.output.contains("sidecore-guest: power button"), "acpid ran the handler\n\(result.output)")
        XCTAssertFalse(result.output.contains("not-stopped"), result.output)
        XCTAssertEqual(result.status, 0, result.output)
        let json = try XCTUnwrap(result.value("stats-json"), result.output)
        let document = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any], json)
        XCTAssertEqual(document["exit"] as? String, "poweroff", "the guest powered off, not the deadline")
    }

    func testStatsJSONUsesKVMNames() throws {
        let json = try section("stats-json").output
        let document = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any], json)
        XCTAssertEqual(document["exit"] as? String, "poweroff")
        let vcpus = try XCTUnwrap(document["vcpus"] as? [[String: Any]])
        XCTAssertEqual(vcpus.count, 1)
        XCTAssertEqual(vcpus[0]["id"] as? Int, 0)
        let kvm = try XCTUnwrap(vcpus[0]["kvm"] as? [String: Any])
        for name in ["exits", "io_exits", "mmio_exits", "halt_exits", "irq_injections"] {
            XCTAssertNotNil(kvm[name], "\(name) missing")
        }
        XCTAssertGreaterThan(kvm["io_exits"] as? Int ?? 0, 100, "the serial console alone causes port I/O exits")
        let text = try section("bzimage-1").output
        XCTAssertTrue(text.contains("KVM statistics per vCPU"), "--stats prints a table at exit")
    }
}
