import Foundation
@testable import Hypervisor
import XCTest

/// The DSDT's hand-encoded AML read back by ACPICA's disassembler (`iasl`, Debian's
/// acpica-tools, installed by `make deps`), the same interpreter family Linux runs: every device
/// must come out as written, with nothing left unparsed.
final class ACPIDisassemblyTests: XCTestCase {
    func testTheDSDTDisassemblesToTheDevicesItDeclares() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dsdt-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let table = directory.appendingPathComponent("dsdt.aml")
        try Data(ACPITables.makeDSDT()).write(to: table)

        let iasl = Process()
        iasl.executableURL = URL(fileURLWithPath: "/usr/bin/iasl")
        iasl.arguments = ["-d", table.path]
        iasl.currentDirectoryURL = directory
        let output = Pipe()
        iasl.standardOutput = output
        iasl.standardError = output
        try iasl.run()
        let log = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        iasl.waitUntilExit()
        XCTAssertEqual(iasl.terminationStatus, 0, log)
        let source = try String(contentsOf: directory.appendingPathComponent("dsdt.dsl"), encoding: .utf8)
        // Without iasl's comments and with whitespace collapsed, so the checks do not depend on its layout.
        let code = source.components(separatedBy: "\n").map { line in
            var line = line.components(separatedBy: "//")[0]
            while let open = line.range(of: "/*"),
                let close = line.range(of: "*/", range: open.upperBound..<line.endIndex)
            {
                line.removeSubrange(open.lowerBound..<close.upperBound)
            }
            return line
        }
        let text = code.joined(separator: " ").split(whereSeparator: \.isWhitespace).joined(separator: " ")
            .replacingOccurrences(of: " )", with: ")")
        for expected in [
            "Name (_S5, Package (0x04) { 0x05, Zero, Zero, Zero })",
            "Device (COM1) { Name (_HID, EisaId (\"PNP0501\")) Name (_UID, One)",
            "Device (PCI0) { Name (_HID, EisaId (\"PNP0A03\"))",
            "Device (PWRB) { Name (_HID, EisaId (\"PNP0C0C\")) Name (_UID, Zero) }",
            "Device (GED0) { Name (_HID, \"ACPI0013\") Name (_UID, Zero)",
            "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive, ,,) { 0x0000000"
                + "\(PowerControl.powerButtonGSI), }",
            "Method (_EVT, 1, NotSerialized) { Notify (\\_SB.PWRB, 0x80) } } } }",
        ] {
            XCTAssertTrue(text.contains(expected), "missing: \(expected)\n\(source)")
        }
        XCTAssertFalse(source.contains("Unknown") || source.contains("External ("), "unparsed AML\n\(source)")
    }
}
