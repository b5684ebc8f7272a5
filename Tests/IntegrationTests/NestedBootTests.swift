import Foundation
import XCTest

/// Boots the default guest under hvctl inside the nested rig (real KVM on emulated SVM), once for
/// the whole class: bzImage and PVH, 1 and 2 vCPUs, a guest script's output and status, poweroff,
/// reboot, panic and SIGTERM exit statuses, and the --stats-json document.
final class NestedBootTests: XCTestCase {
    static let commandLine = "console=ttyS0 panic=-1 quiet"
    static let reportScript = "echo report:cpus=$(grep -c ^processor /proc/cpuinfo); exit 7"

    /// One rig run covering every scenario; each prints `=== begin NAME` ... `=== end NAME status=N`.
    static let rigRun: Result<(sections: [String: NestedRig.Section], output: String), Error> = Result {
        try Toolchain.requireArtifacts()
        func guestRun(_ script: String) -> String {
            "\(commandLine) guest.run=\(Data(script.utf8).base64EncodedString())"
        }
        func boot(_ name: String, kernel: String, cpus: Int, cmdline: String, extra: String = "") -> String {
            """
            echo "=== begin \(name)"
            hvctl run --kernel /guest/\(kernel) --initrd /guest/initramfs.cpio --cpus \(cpus) --cmdline '\(cmdline)' \(extra)
            echo "=== end \(name) status=$?"
            """
        }
        let script = [
            boot("bzimage-1", kernel: "bzImage", cpus: 1, cmdline: guestRun(reportScript), extra: "--stats-json /tmp/stats.json --stats"),
            "echo '=== begin stats-json'; cat /tmp/stats.json; echo '=== end stats-json status=0'",
            boot("bzimage-2", kernel: "bzImage", cpus: 2, cmdline: guestRun(reportScript)),
            boot("pvh-1", kernel: "vmlinux", cpus: 1, cmdline: guestRun(reportScript)),
            boot("pvh-2", kernel: "vmlinux", cpus: 2, cmdline: guestRun(reportScript)),
            boot("reboot", kernel: "bzImage", cpus: 1, cmdline: guestRun("echo rebooting; reboot -f")),
            boot("panic", kernel: "vmlinux", cpus: 1, cmdline: guestRun("echo c > /proc/sysrq-trigger")),
            """
            echo "=== begin sigterm"
            hvctl run --kernel /guest/bzImage --initrd /guest/initramfs.cpio --cmdline '\(commandLine)' &
            pid=$!; sleep 8; kill -TERM $pid; wait $pid
            # The guest may have been stopped mid-line: the end marker goes on a line of its own.
            st=$?; echo; echo "=== end sigterm status=$st"
            """,
        ].joined(separator: "\n")
        return try NestedRig.run(script: script)
    }

    func section(_ name: String) throws -> NestedRig.Section {
        let run = try Self.rigRun.get()
        return try XCTUnwrap(run.sections[name], "no output for \(name); the rig printed:\n\(run.output.suffix(3000))")
    }

    func assertReported(_ name: String, cpus: Int) throws {
        let result = try section(name)
        XCTAssertEqual(result.status, 0, "guest poweroff makes hvctl exit 0\n\(result.output)")
        XCTAssertTrue(result.output.contains("sidecore-guest: ready"), result.output)
        XCTAssertTrue(result.output.contains("report:cpus=\(cpus)"), "the guest brought up \(cpus) CPUs\n\(result.output)")
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

    func testSIGTERMStopsTheVM() throws {
        XCTAssertEqual(try section("sigterm").status, 128 + 15)
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
