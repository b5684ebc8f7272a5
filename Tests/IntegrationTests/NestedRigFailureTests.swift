import XCTest

/// Which rig outputs count as an L3 triple fault (`NestedRig.ForeignFailure`), on outputs shaped
/// like the rig's: guest console lines end in "\r\n" there, hvctl's own in "\n".
final class NestedRigFailureTests: XCTestCase {
    private func failure(_ stdout: String) -> NestedRig.ForeignFailure? {
        NestedRig.ForeignFailure(status: 0, stdout: stdout, stderr: "")
    }

    /// How l2-init prints an L3 shutdown that L2's KVM saw.
    private func shutdown(intrInfo: String) -> String {
        "nested-rig: L3 shutdown: vcpu 1 reason shutdown rip 0x100291 info1 0x0000000000000000 info2 "
            + "0x0000000000000000 intr_info 0x\(intrInfo) error_code 0x00000000\n"
    }

    func testHvctlsTripleFaultLineAfterAGuestLine() {
        let fault = "iobench: start\r\nhvctl: vcpu1 triple-faulted (its registers were reset by KVM)\n"
        XCTAssertEqual(failure(fault + shutdown(intrInfo: "80000041")), .l3TripleFault)
        XCTAssertEqual(
            failure("hvctl: vm b: vcpu0 triple-faulted at RIP 0x1\n" + shutdown(intrInfo: "8000030e")), .l3TripleFault)
    }

    /// Only a shutdown in a failed delivery is the rig's: not one delivering a double fault (the
    /// guest's own triple fault), not one L2 did not record.
    func testATripleFaultWithoutAFailedDeliveryIsNotRepeated() {
        let fault = "hvctl: vcpu0 triple-faulted at RIP 0x1\n"
        XCTAssertNil(failure(fault))
        XCTAssertNil(failure(fault + shutdown(intrInfo: "80000b08")))
        XCTAssertNil(failure(fault + shutdown(intrInfo: "00000000")))
    }

    /// 2026-12-06 CI: the fault cut iobench's result line, and hvctl's line went on from it.
    func testHvctlsTripleFaultLineGluedToAnUnfinishedGuestLine() {
        let stdout =
            "iobench: end\r\niobench: result test=redirect vector=65 requhvctl: vcpu1 triple-faulted (its "
            + "registers were reset by KVM, as on AMD hosts)\nnested-rig: L3 shutdown: vcpu 1 reason shutdown rip "
            + "0x100291 info1 0x0 info2 0x0 intr_info 0x80000041 error_code 0x00000000\n"
        XCTAssertEqual(failure(stdout), .l3TripleFault)
        let evidence = NestedRig.ForeignFailure.l3TripleFault.evidence(stdout: stdout, stderr: "")
        XCTAssertTrue(evidence.contains("intr_info 0x80000041"), evidence)
    }

    /// The SMP stress prints the triple faults it repeated itself, indented: not the rig's to repeat.
    func testTheStressDiagnosisIndentedLinesAreNotOne() {
        let stdout =
            "smp stress: boot 3 hvctl triple-fault\n    [    4.8] acpi PNP0A03:00: _OSC\r\n"
            + "    hvctl: vcpu0 triple-faulted at RIP 0x1\n    hvctl:   last exits\n"
        XCTAssertNil(failure(stdout + shutdown(intrInfo: "80000041")))
        XCTAssertNil(failure("guest says triple-faulted\r\n" + shutdown(intrInfo: "80000041")))
    }

    /// A stalled L2's registers (read before its console is printed) are in the repeat's evidence
    /// however long the console.
    func testAStallsEvidenceKeepsL2sRegisters() throws {
        let stderr =
            "---- L2 CPU registers at the stall (QEMU monitor, two readings) ----\nCPU#0\nRIP=ffffffff81a10d9b\n"
            + "---- L2 console ----\n" + String(repeating: "console line\n", count: 1000)
            + "nested/run: L2 stalled (no heartbeat for 90s); killed it\n"
        let failure = try XCTUnwrap(NestedRig.ForeignFailure(status: 124, stdout: "", stderr: stderr))
        XCTAssertEqual(failure, .l2Stalled)
        let evidence = failure.evidence(stdout: "", stderr: stderr)
        XCTAssertTrue(evidence.contains("RIP=ffffffff81a10d9b"), evidence)
        XCTAssertTrue(evidence.contains("nested/run: L2 stalled"), evidence)
    }
}
