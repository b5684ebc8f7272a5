import Foundation
import Hypervisor
import TestSupport
import VMM
import XCTest

@testable import hvctl

/// `hvctl bench fio`'s pieces without a guest: the script the guest runs, its console read back,
/// fio's and iperf3's JSON as measurements, and the options.
final class BenchFioTests: XCTestCase {
    /// fio 3.33's JSON for a randrw job (`--unified_rw_reporting=both --lat_percentiles=1`), cut to
    /// the sections read plus a few it carries besides.
    static let fioOutput = """
        {
          "fio version" : "fio-3.33",
          "jobs" : [
            {
              "jobname" : "bench", "groupid" : 0, "error" : 0,
              "read" : { "total_ios" : 22611, "iops" : 22588.4, "lat_ns" : { "min" : 4595, "max" : 1, "mean" : 1.0 } },
              "write" : {
                "io_bytes" : 92131328, "total_ios" : 22493, "iops" : 22470.529471,
                "lat_ns" : { "min" : 4595, "max" : 21070087, "mean" : 70464.05126, "N" : 22493 }
              },
              "mixed" : {
                "io_bytes" : 184745984, "total_ios" : 45104, "iops" : 45058.941059, "runtime" : 1001,
                "lat_ns" : {
                  "min" : 4595, "max" : 21119238, "mean" : 84128.087864, "stddev" : 454269.856624, "N" : 45104,
                  "percentile" : {
                    "50.000000" : 69120, "90.000000" : 109056, "99.000000" : 177152, "99.900000" : 585728
                  }
                }
              },
              "latency_ns" : { "2" : 0.0 }
            }
          ]
        }
        """

    func testFiosJSONBecomesAMeasurementWithItsPercentiles() throws {
        let measurement = try FioResult.measurement(Self.fioOutput, workload: .randrw)
        XCTAssertEqual(measurement.requests, 45104)
        XCTAssertEqual(measurement.writes, 22493)
        XCTAssertEqual(measurement.errors, 0)
        XCTAssertEqual(measurement.iops, 45058.941059, accuracy: 1e-6)
        XCTAssertEqual(measurement.latencyMeanNanoseconds, 84128)
        let latency = try XCTUnwrap(measurement.latency)
        XCTAssertEqual(latency.count, 45104)
        XCTAssertEqual(
            [latency.p50Nanoseconds, latency.p90Nanoseconds, latency.p99Nanoseconds, latency.p999Nanoseconds],
            [69120, 109056, 177152, 585728])
        XCTAssertEqual(latency.maxNanoseconds, 21_119_238)
        XCTAssertNil(measurement.bitsPerSecond)

        let failed = Self.fioOutput.replacingOccurrences(of: "\"error\" : 0", with: "\"error\" : 5")
        XCTAssertEqual(try FioResult.measurement(failed, workload: .randrw).errors, 1)
    }

    func testWhatIsNotFiosJSONIsAnErrorNamingItsFirstLine() {
        XCTAssertThrowsError(
            try FioResult.measurement("fio: pid=80, err=5/file:io_u.c:1889, func=io_u error\nmore", workload: .randread)
        ) { error in
            XCTAssertEqual(
                "\(error)", "fio in the guest printed no result: fio: pid=80, err=5/file:io_u.c:1889, func=io_u error")
        }
        XCTAssertThrowsError(try FioResult.measurement(#"{"jobs": []}"#, workload: .randread))
        // Absurd figures clamp instead of trapping.
        let absurd = Self.fioOutput.replacingOccurrences(of: "\"mean\" : 84128.087864", with: "\"mean\" : -1e300")
        XCTAssertEqual(try FioResult.measurement(absurd, workload: .randrw).latencyMeanNanoseconds, 0)
    }

    func testIperfsJSONCountsWhatReachedTheHostInWritesOfItsSize() throws {
        let output = """
            {"start": {"test_start": {"protocol": "TCP", "blksize": 131072}},
             "end": {"sum_sent": {"seconds": 2.0, "bytes": 262144000, "bits_per_second": 1048576000.0},
                     "sum_received": {"seconds": 2.0, "bytes": 131072000, "bits_per_second": 524288000.0}}}
            """
        let measurement = try FioResult.measurement(output, workload: .tcpStream)
        XCTAssertEqual(measurement.requests, 1000)
        XCTAssertEqual(measurement.iops, 500)
        XCTAssertEqual(measurement.bitsPerSecond, 524_288_000)
        XCTAssertEqual(measurement.latencyMeanNanoseconds, 0)
        XCTAssertThrowsError(
            try FioResult.measurement(#"{"start": {}, "error": "unable to connect to server"}"#, workload: .tcpStream)
        ) { error in
            XCTAssertEqual("\(error)", "iperf3 in the guest failed: unable to connect to server")
        }
        // The guest's figures are checked before anything converts them: these would trap.
        let huge = output.replacingOccurrences(of: #""bytes": 131072000"#, with: #""bytes": 1e300"#)
        XCTAssertThrowsError(try FioResult.measurement(huge, workload: .tcpStream)) { error in
            XCTAssertTrue("\(error)".hasPrefix("iperf3 in the guest reported figures out of range"), "\(error)")
        }
        XCTAssertEqual(BenchTable.whole(1234.7), "1234")
        XCTAssertEqual(BenchTable.whole(.infinity), "inf")
        XCTAssertEqual(BenchTable.whole(1e300), "1e+300")
    }

    func testTheConsoleGivesMarksAndEachLoadsOutput() {
        var console = FioConsole()
        XCTAssertNil(console.take("sidecore-guest: ready"))
        XCTAssertEqual(console.take("bench-fio: start 1"), .start(load: 1))
        XCTAssertEqual(console.take("bench-fio: go 1"), .go(load: 1))
        // A kernel message glued to the front of a mark's line.
        XCTAssertEqual(console.take("[   3.1] random: crng init done bench-fio: end 1 0"), .end(load: 1, status: 0))
        XCTAssertNil(console.take("bench-fio: output 1"))
        XCTAssertNil(console.take("{"))
        XCTAssertNil(console.take("bench-fio: start 9"), "inside an output, marks are output")
        XCTAssertNil(console.take("}"))
        XCTAssertEqual(
            console.take("bench-fio: output-end 1"), .output(load: 1, text: "{\nbench-fio: start 9\n}"))
        XCTAssertEqual(console.take("bench-fio: end 2 1"), .end(load: 2, status: 1))
        XCTAssertNil(console.take("bench-fio: start x"))
        XCTAssertNil(console.take("bench-fio: end"))

        // An output without end is cut at the limit, not held without bound.
        var flood = FioConsole()
        _ = flood.take("bench-fio: output 1")
        let line = String(repeating: "x", count: 4095)
        for _ in 0..<(FioConsole.outputLimit / 4096 + 10) { _ = flood.take(line) }
        guard case .output(_, let text) = flood.take("bench-fio: output-end 1") else {
            return XCTFail("no output")
        }
        XCTAssertLessThanOrEqual(text.utf8.count, FioConsole.outputLimit)
    }

    func testABootsMeasurementsNameTheLoadThatDidNotFinish() throws {
        let loads = [
            FioLoad(workload: .randread, blockSize: 4096, qd: 1), FioLoad(workload: .randread, blockSize: 4096, qd: 16),
        ]
        var boot = FioBoot()
        for line in ["bench-fio: start 1", "bench-fio: end 1 0", "bench-fio: output 1"]
            + Self.fioOutput.split(separator: "\n").map(String.init) + [
                "bench-fio: output-end 1", "bench-fio: start 2",
            ]
        {
            _ = boot.take(line)
        }
        XCTAssertThrowsError(try boot.measurements(loads, who: "hvctl")) { error in
            XCTAssertTrue("\(error)".hasPrefix("the bench guest under hvctl did not finish randread qd=16"), "\(error)")
        }
        XCTAssertEqual(try boot.measurements(Array(loads.prefix(1)), who: "hvctl").map(\.requests), [45104])
        for line in ["bench-fio: end 2 1", "bench-fio: output 2", "fio: io_u error", "bench-fio: output-end 2"] {
            _ = boot.take(line)
        }
        XCTAssertThrowsError(try boot.measurements(loads, who: "QEMU")) { error in
            XCTAssertEqual("\(error)", "fio in the bench guest under QEMU failed (status 1): fio: io_u error")
        }
        // A stream that failed says iperf3's error and the guest's view of its network (the script's
        // last lines), past the output's closing blank line.
        var stream = FioBoot()
        for line in [
            "bench-fio: end 1 1", "bench-fio: output 1", "{", #"  "start": {},"#,
            #"  "error": "unable to connect to server: Connection timed out""#, "}",
            "guest net: 3 9 169.254.77.1 dev eth0 lladdr 02:00:00:77:00:01 REACHABLE Tcp: 1 200", "",
            "bench-fio: output-end 1",
        ] {
            _ = stream.take(line)
        }
        XCTAssertThrowsError(
            try stream.measurements([FioLoad(workload: .tcpStream, blockSize: 131_072, qd: 1)], who: "QEMU")
        ) { error in
            XCTAssertEqual(
                "\(error)",
                #"iperf3 in the bench guest under QEMU failed (status 1):   "start": {}, |   "error": "unable to connect to server: "#
                    + #"Connection timed out" | } | guest net: 3 9 169.254.77.1 dev eth0 lladdr 02:00:00:77:00:01 "#
                    + "REACHABLE Tcp: 1 200")
        }
    }

    /// The stream's host end keeps what it printed for a failed stream's error, as it comes and
    /// once killed (iperf3 writes through stdio: without --forceflush its lines die in its buffer).
    func testTheIperfServerKeepsWhatItSaidWhenStopped() throws {
        let server = try BenchIperfServer()
        let listening = "Server listening on \(server.port) (test #1)"
        XCTAssertTrue(eventually(seconds: 10) { server.said.hasSuffix(listening) }, server.said)
        server.stop()
        XCTAssertEqual(server.said, "; the host's iperf3 server said: " + listening)
    }

    /// A boot that stops making progress is stopped, naming what it waited for; one that keeps
    /// making progress is not.
    func testTheWatchdogStopsABootThatHangsAndSaysWhere() throws {
        let loads = [FioLoad(workload: .randread, blockSize: 4096, qd: 16)]
        // Past the boot, the boot's own deadline is far off: only the stage under test can expire.
        func expiry(bootNanoseconds: UInt64 = 60_000_000_000, _ setUp: (FioWatchdog) -> Void) throws -> String {
            let told = Lock<String?>(nil)
            let watchdog = try FioWatchdog(
                loadSeconds: 0, bootNanoseconds: bootNanoseconds, slackNanoseconds: 50_000_000
            ) { message in told.withLock { $0 = message } }
            setUp(watchdog)
            XCTAssertTrue(eventually(seconds: 10) { told.withLock { $0 } != nil }, "not stopped")
            watchdog.stop()
            XCTAssertEqual(watchdog.expired, told.withLock { $0 })
            return told.withLock { $0 } ?? ""
        }
        XCTAssertEqual(
            try expiry(bootNanoseconds: 50_000_000) { _ in },
            "the bench guest made no progress: it did not reach its first load in time")
        XCTAssertEqual(
            try expiry { $0.note(.start(load: 1), loads: loads) },
            "the bench guest made no progress: it did not reach the end of fio-randread qd=16 in time")
        XCTAssertEqual(
            try expiry { $0.note(.output(load: 1, text: ""), loads: loads) },
            "the bench guest made no progress: it did not reach its power-off in time")

        let quiet = try FioWatchdog(loadSeconds: 600) { _ in XCTFail("a boot within its time was stopped") }
        quiet.note(.start(load: 1), loads: loads)
        quiet.stop()
        XCTAssertNil(quiet.expired)
    }

    func testTheGuestsScriptRunsEveryLoadAndFitsItsCommandLine() throws {
        let command = try BenchFio.parse(["--workload", "randread,tcp-stream", "--qd", "1,16", "--bs", "4k,64k"])
        let loads = try command.loads()
        XCTAssertEqual(
            loads.map { "\($0.workload.label) \($0.blockSize) \($0.qd)" },
            [
                "fio-randread 4096 1", "fio-randread 4096 16", "fio-randread 65536 1", "fio-randread 65536 16",
                "tcp-stream 131072 1",
            ])
        let line = try FioGuestScript.commandLine(loads: loads, seconds: 7, iperfPort: 23456)
        XCTAssertTrue(line.hasPrefix("console=ttyS0 panic=-1 quiet guest.run="))
        let encoded = try XCTUnwrap(line.split(separator: "=", maxSplits: 3).last)
        let script = String(decoding: try XCTUnwrap(Data(base64Encoded: String(encoded))), as: UTF8.self)
        XCTAssertTrue(script.contains(#"for load in "randread 4k 1" "randread 4k 16""#), script)
        XCTAssertTrue(script.contains("--runtime=7 "), script)
        XCTAssertTrue(script.contains(#"echo "bench-fio: start $i"; sleep 1; echo "bench-fio: go $i""#), script)
        XCTAssertTrue(script.contains("iperf3 -c 169.254.77.1 -p 23456 -t 7"), script)
        XCTAssertTrue(script.contains("ip addr add 169.254.77.2/24 dev eth0"), script)
        XCTAssertTrue(script.contains("timeout -k 10 67 iperf3"), "a stream that hangs ends in the guest: \(script)")
        // The guest's busybox sh runs it: at least it must parse as POSIX shell (dash here).
        let check = try BenchProcess.runWithStatus("/bin/sh", ["-n", "-c", script])
        XCTAssertEqual(check.status, 0, check.output)
        let blockOnly = FioGuestScript.script(loads: Array(loads.prefix(1)), seconds: 1, iperfPort: 1)
        XCTAssertFalse(blockOnly.contains("ip addr"), "no NIC to set up without a stream")
        XCTAssertFalse(blockOnly.contains("iperf3"), "nor a stream's lines")
        XCTAssertEqual(try BenchProcess.runWithStatus("/bin/sh", ["-n", "-c", blockOnly]).status, 0, blockOnly)

        // Six sizes at six depths fit, at any duration up to an hour.
        let many = try BenchFio.parse(["--qd", "1,2,4,8,16,32", "--bs", "4k,8k,16k,32k,64k,128k"]).loads()
        XCTAssertNoThrow(try FioGuestScript.commandLine(loads: many, seconds: 3600, iperfPort: 29_999))
        XCTAssertThrowsError(try FioGuestScript.commandLine(loads: many + many, seconds: 1, iperfPort: 1))
    }

    func testBadOptionsAreRefusedWithTheirName() {
        for (arguments, message) in [
            (
                ["--workload", "seqread"],
                "--workload seqread: 'seqread' is not randread, randwrite, randrw or tcp-stream"
            ),
            (["--qd", "0"], "--qd 0: '0' is not a queue depth from 1 to 256"),
            (["--duration", "0"], "--duration 0: 1 to 3600 seconds"),
            (["--cpus", "17"], "--cpus 17: 1 to 16"),
            (["--irq-coalesce", "maybe"], "--irq-coalesce maybe: 'maybe' is not on or off"),
            (["--peer", "vmware"], "--peer vmware: 'vmware' is not host, qemu or none"),
            (["--null", "--disk", "/tmp/x"], "--null: not with --disk"),
        ] {
            XCTAssertThrowsError(try BenchFio.parse(arguments), "\(arguments)") { error in
                XCTAssertEqual(BenchFio.message(for: error), message)
            }
        }
    }

    /// fio's percentiles do not merge over repeats: a cell shows its median run's.
    func testACellOfFioRunsShowsTheMedianRunsPercentiles() throws {
        func run(_ iops: Double, p50: UInt64) -> BenchMeasurement {
            var measurement = BenchMeasurement(
                requests: 10, writes: 0, errors: 0, iops: iops, latencyMeanNanoseconds: p50)
            measurement.latency = LatencySummary(
                count: 10, meanNanoseconds: p50, p50Nanoseconds: p50, p90Nanoseconds: p50, p99Nanoseconds: p50,
                p999Nanoseconds: p50, maxNanoseconds: p50)
            return measurement
        }
        let cell = BenchReport.Cell(
            target: "hvctl-poll", workload: "fio-randread", blockSize: 4096, qd: 1,
            runs: [run(300, p50: 3000), run(100, p50: 1000), run(200, p50: 2000)])
        XCTAssertEqual(cell.latency?.p50Nanoseconds, 2000)
    }
}
