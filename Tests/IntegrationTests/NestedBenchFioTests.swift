import Foundation
import XCTest

/// `hvctl bench fio` where Linux guests boot, the nested rig's L2: a short run of fio random reads
/// and an iperf3 TCP stream under hvctl's default hybrid mode, and fio under hvctl and QEMU, the
/// records checked for figures that are present and agree with each other, and L2 checked for
/// anything each run left behind (TAP, scratch files, the iperf3 server).
final class NestedBenchFioTests: XCTestCase {
    static let seconds = 2

    static let rigRun: Result<(sections: [String: NestedRig.Section], output: String), Error> = Result {
        try Toolchain.requireArtifacts()
        let initramfs = Toolchain.guestImages.appendingPathComponent("bench-initramfs.cpio").path
        // QEMU runs fio only: its guest's iperf3 once hung in the TCP stream's connect in the rig (CI 28 on
        // 2026-12-06, the watchdog ended it; cause not found), which is open, not something to test around.
        func bench(_ name: String, workloads: String, peer: String) -> String {
            """
            echo "=== begin \(name)"
            hvctl bench fio --kernel /guest/bzImage --initrd /bench-initramfs.cpio --workload \(workloads) \
            --qd 4 --duration \(seconds) --repeat 1 --mode hybrid --peer \(peer) --json /tmp/\(name).json > /tmp/table 2>&1
            st=$?
            cat /tmp/table
            echo "record $(tr -d '\\n' < /tmp/\(name).json)"
            echo "leftovers:$(ls /sys/class/net | grep hvb)$(ls /tmp | grep hvctl-bench)$(pidof iperf3)."
            echo "=== end \(name) status=$st"
            """
        }
        let script =
            bench("bench", workloads: "randread,tcp-stream", peer: "none") + "\n"
            + bench("qemu", workloads: "randread", peer: "qemu")
        return try NestedRig.run(
            script: script, files: [initramfs: "/bench-initramfs.cpio"], binaries: ["/usr/bin/iperf3"],
            withQEMU: true, memoryMiB: 3072, timeoutInSeconds: 900)
    }

    func section(_ name: String = "bench") throws -> NestedRig.Section {
        let run = try Self.rigRun.get()
        return try XCTUnwrap(run.sections[name], "no \(name) output; the rig printed:\n\(run.output.suffix(3000))")
    }

    func record(_ section: NestedRig.Section) throws -> [String: Any] {
        let line = try XCTUnwrap(
            section.output.components(separatedBy: "\n").first { $0.hasPrefix("record ") }, section.output)
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.dropFirst(7).utf8)) as? [String: Any])
    }

    /// QEMU's cell beside hvctl's: KVM's exits read through QEMU's monitor at the same marks.
    func testQEMUsCellIsMeasuredAtTheSameMarks() throws {
        let section = try section("qemu")
        XCTAssertEqual(section.status, 0, section.output)
        let cells = try XCTUnwrap(try record(section)["cells"] as? [[String: Any]])
        XCTAssertEqual(
            cells.map { "\($0["target"] ?? "") \($0["workload"] ?? "")" },
            ["hvctl-hybrid fio-randread", "qemu fio-randread"])
        for cell in cells {
            let run = try XCTUnwrap((cell["runs"] as? [[String: Any]])?.first)
            XCTAssertGreaterThan(run["requests"] as? Double ?? 0, 0, "\(cell)")
            XCTAssertEqual(run["errors"] as? Double, 0, "\(cell)")
            XCTAssertGreaterThan(run["exitsPerRequest"] as? Double ?? 0, 0, "\(cell)")
            XCTAssertNotNil((run["latency"] as? [String: Double])?["p99Nanoseconds"], "\(cell)")
        }
        XCTAssertTrue(section.output.contains("leftovers:."), "something left behind:\n\(section.output)")
    }

    func testARunReportsConsistentFiguresAndLeavesNothingBehind() throws {
        let section = try section()
        XCTAssertEqual(section.status, 0, section.output)
        let lines = section.output.components(separatedBy: "\n")
        let record = try record(section)
        let environment = try XCTUnwrap(record["environment"] as? [String: Any])
        XCTAssertEqual(environment["kvmExecution"] as? String, "native (AMD SVM)", "L2's KVM runs L3's kernel")
        let cells = try XCTUnwrap(record["cells"] as? [[String: Any]])
        XCTAssertEqual(
            cells.map { "\($0["target"] ?? "") \($0["workload"] ?? "")" },
            ["hvctl-hybrid fio-randread", "hvctl-hybrid tcp-stream"])
        guard cells.count == 2 else { return }
        for cell in cells {
            let run = try XCTUnwrap((cell["runs"] as? [[String: Any]])?.first)
            XCTAssertGreaterThan(run["requests"] as? Double ?? 0, 0, "\(cell)")
            XCTAssertEqual(run["errors"] as? Double, 0, "\(cell)")
            // KVM's own count, from hvctl's statistics.
            XCTAssertGreaterThan(run["exitsPerRequest"] as? Double ?? 0, 0, "\(cell)")
        }

        let reads = try XCTUnwrap((cells[0]["runs"] as? [[String: Any]])?.first)
        let requests = try XCTUnwrap(reads["requests"] as? Double)
        let iops = try XCTUnwrap(reads["iops"] as? Double)
        XCTAssertGreaterThan(requests, 0)
        XCTAssertEqual(reads["errors"] as? Double, 0)
        XCTAssertEqual(reads["writes"] as? Double, 0)
        // fio's own count and rate over its runtime agree (within its ramp and rounding).
        XCTAssertEqual(requests / iops, Double(Self.seconds), accuracy: 0.5)
        let latency = try XCTUnwrap(reads["latency"] as? [String: Double])
        let percentiles = ["p50Nanoseconds", "p90Nanoseconds", "p99Nanoseconds", "p999Nanoseconds", "maxNanoseconds"]
            .map { latency[$0] ?? 0 }
        XCTAssertGreaterThan(percentiles[0], 0)
        XCTAssertEqual(percentiles, percentiles.sorted(), "percentiles in order: \(latency)")
        XCTAssertEqual(latency["count"], requests)
        // QD4 through one queue: every request was in the device, which completed each with an interrupt at most.
        let device = try XCTUnwrap(reads["deviceLatency"] as? [String: Double])
        XCTAssertGreaterThanOrEqual(device["count"] ?? 0, requests)
        XCTAssertGreaterThan(try XCTUnwrap(reads["exitsPerRequest"] as? Double), 0)
        let interrupts = try XCTUnwrap(reads["interruptsPerRequest"] as? Double)
        XCTAssertGreaterThan(interrupts, 0)
        XCTAssertLessThanOrEqual(interrupts, 1.1)
        XCTAssertGreaterThan(try XCTUnwrap(reads["sideCoreNanosecondsPerRequest"] as? Double), 0)

        let stream = try XCTUnwrap((cells[1]["runs"] as? [[String: Any]])?.first)
        let bits = try XCTUnwrap(stream["bitsPerSecond"] as? Double)
        XCTAssertGreaterThan(bits, 0)
        let writes = try XCTUnwrap(stream["requests"] as? Double)
        XCTAssertEqual(writes * 131_072 * 8 / bits, Double(Self.seconds), accuracy: 0.5)
        XCTAssertTrue(lines.contains { $0.hasPrefix("hvctl-hybrid") && $0.contains("Mbit/s") }, section.output)

        XCTAssertTrue(lines.contains("leftovers:."), "a TAP, scratch file or iperf3 left behind:\n\(section.output)")
    }
}
