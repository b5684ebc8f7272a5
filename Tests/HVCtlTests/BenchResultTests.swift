import Foundation
import XCTest

@testable import hvctl

/// `hvctl bench`'s pieces without a guest: the histogram the iobench guest hands over, merged
/// over repeats, the option lists, and the JSON record's shape.
final class BenchResultTests: XCTestCase {
    /// Bucket bounds as blk.c's bucket() files a value: 8 per power of two above 8 ns.
    func testBucketBoundsMatchTheGuestsBucketing() {
        // blk.c's bucket(): 1000 ns = 0b1111101000, exponent 9, next three bits 111: 9 * 8 + 7.
        XCTAssertEqual(IOBenchHistogram.index(of: 1000), 79)
        XCTAssertEqual(IOBenchHistogram.index(of: 4608), 97)
        XCTAssertEqual(IOBenchHistogram.index(of: 7), 7)
        for ns: UInt64 in [0, 7, 8, 9, 15, 16, 1000, 4608, 5119, 5120, 123_456, 999_999_999, 1 << 61] {
            let index = IOBenchHistogram.index(of: ns)
            XCTAssertTrue(IOBenchHistogram.bounds(of: index).contains(ns), "\(ns) in bucket \(index)")
            XCTAssertEqual(IOBenchHistogram.index(of: IOBenchHistogram.bounds(of: index).lowerBound), index)
        }
        XCTAssertEqual(IOBenchHistogram.bounds(of: 97), 4608...5119)
        XCTAssertEqual(IOBenchHistogram.bounds(of: IOBenchHistogram.bucketCount - 1).upperBound, (1 << 62) - 1)
    }

    func testTheHistogramLineIsParsedAndBadOnesAreRefused() throws {
        let line = "\u{1b}[0miobench: histogram b7=3 b97=2 b200=5"
        let histogram = try XCTUnwrap(IOBenchHistogram(line: line))
        XCTAssertEqual(histogram.requests, 10)
        XCTAssertEqual(histogram.buckets.map(\.count), [3, 2, 5])
        XCTAssertEqual(histogram.buckets.first?.lowNanoseconds, 7)
        XCTAssertNil(IOBenchHistogram(line: "iobench: result test=blk qd=1"), "not a histogram line")
        XCTAssertNil(IOBenchHistogram(line: "iobench: histogram b496=1"), "a bucket past 2^62 ns")
        XCTAssertNil(IOBenchHistogram(line: "iobench: histogram q3=1"), "not a bucket")
        XCTAssertEqual(IOBenchHistogram(line: "iobench: histogram")?.requests, 0, "an empty run")
    }

    func testAResultCarriesItsHistogramAndPercentiles() throws {
        // 900 requests at ~1 µs, 98 at ~10 µs, 2 at ~1 ms.
        let lines = [
            "iobench: histogram b79=900 b106=98 b159=2",
            "iobench: result test=blk qd=1 requests=1000 bs=4096 write_pct=0 writes=0 errors=0 kicks=0 "
                + "ns=1000000 iops=1000000 lat_avg_ns=2000 lat_max_ns=1000123",
        ]
        let result = try XCTUnwrap(IOBenchResult(lines: lines))
        let measurement = result.measurement
        let latency = try XCTUnwrap(measurement.latency)
        XCTAssertEqual(latency.count, 1000)
        XCTAssertEqual(latency.meanNanoseconds, 2000, "the guest's exact mean, not the buckets'")
        XCTAssertEqual(latency.maxNanoseconds, 1_000_123, "the guest's exact maximum")
        XCTAssertTrue(IOBenchHistogram.bounds(of: 79).contains(latency.p50Nanoseconds), "\(latency.p50Nanoseconds)")
        XCTAssertTrue(IOBenchHistogram.bounds(of: 106).contains(latency.p99Nanoseconds), "\(latency.p99Nanoseconds)")
        XCTAssertTrue(IOBenchHistogram.bounds(of: 159).contains(latency.p999Nanoseconds), "\(latency.p999Nanoseconds)")
        XCTAssertNil(IOBenchResult(lines: ["iobench: histogram b79=1"]), "no result line")
    }

    func testACellMergesEveryRepeatsRequests() throws {
        func run(_ histogram: String, requests: UInt64, mean: UInt64, max: UInt64) throws -> BenchMeasurement {
            try XCTUnwrap(
                IOBenchResult(lines: [
                    "iobench: histogram \(histogram)",
                    "iobench: result requests=\(requests) errors=0 iops=1 lat_avg_ns=\(mean) lat_max_ns=\(max)",
                ])
            ).measurement
        }
        var cell = BenchReport.Cell(target: "hvctl-poll", workload: "randread", blockSize: 4096, qd: 1, runs: [])
        cell.runs.append(try run("b79=100", requests: 100, mean: 1000, max: 1100))
        cell.runs.append(try run("b79=100 b106=100", requests: 200, mean: 4000, max: 9000))
        let latency = try XCTUnwrap(cell.latency)
        XCTAssertEqual(latency.count, 300)
        XCTAssertEqual(latency.meanNanoseconds, 3000, "weighted by each run's requests")
        XCTAssertEqual(latency.maxNanoseconds, 9000)
        XCTAssertTrue(IOBenchHistogram.bounds(of: 106).contains(latency.p90Nanoseconds))

        cell.runs.append(
            BenchMeasurement(requests: 10, writes: 0, errors: 0, iops: 1, latencyMeanNanoseconds: 5))
        XCTAssertNil(cell.latency, "no distribution when a run has none (rather than one of some runs)")
    }

    /// `--vms`: the VMs' runs, made at the same time, as one: rates add, per-request figures and
    /// the mean are weighted by requests, histograms merge; a figure one part lacks is left out.
    func testRunsMadeAtOnceCombine() throws {
        func part(_ histogram: String, requests: UInt64, iops: UInt64, mean: UInt64, exits: Double) throws
            -> BenchMeasurement
        {
            var measurement = try XCTUnwrap(
                IOBenchResult(lines: [
                    "iobench: histogram \(histogram)",
                    "iobench: result requests=\(requests) writes=\(requests / 2) errors=1 iops=\(iops) kicks=0 "
                        + "lat_avg_ns=\(mean) lat_max_ns=\(mean * 2)",
                ])
            ).measurement
            measurement.exitsPerRequest = exits
            return measurement
        }
        let a = try part("b79=100", requests: 100, iops: 1000, mean: 1000, exits: 1)
        let b = try part("b79=100 b106=200", requests: 300, iops: 3000, mean: 5000, exits: 3)
        let combined = BenchMeasurement.combined([a, b])
        XCTAssertEqual(combined.requests, 400)
        XCTAssertEqual(combined.writes, 200)
        XCTAssertEqual(combined.errors, 2)
        XCTAssertEqual(combined.iops, 4000, "the VMs' rates add up")
        XCTAssertEqual(combined.latencyMeanNanoseconds, 4000, "weighted by each VM's requests")
        XCTAssertEqual(combined.exitsPerRequest, 2.5)
        XCTAssertEqual(combined.kicksPerRequest, 0)
        XCTAssertEqual(combined.latencyHistogram?.requests, 400)
        XCTAssertEqual(combined.latency?.maxNanoseconds, 10000)
        XCTAssertNil(combined.interruptsPerRequest, "neither part has it")
        var noExits = b
        noExits.exitsPerRequest = nil
        XCTAssertNil(BenchMeasurement.combined([a, noExits]).exitsPerRequest, "not from one part's figure alone")
        XCTAssertEqual(BenchMeasurement.combined([a]).iops, 1000)
    }

    func testWorkloadAndSizeListsAreChecked() throws {
        XCTAssertEqual(try BenchWorkload.parse("randread,randrw").map(\.writePercent), [0, 50])
        XCTAssertEqual(try BenchBlockSize.parse("4k,8192,128K"), [4096, 8192, 131_072])
        for bad in ["2k", "256k", "6000", "k", "", "4k,,8k"] {
            XCTAssertThrowsError(try BenchBlockSize.parse(bad), bad)
        }
        XCTAssertThrowsError(try BenchWorkload.parse("randread,seqread"))
        let redirect = BenchLoad(workload: .redirect, blockSize: 4096, qd: 1, requests: 50, interrupts: true)
        XCTAssertEqual(
            redirect.guestCommandLine(holdMilliseconds: 5, verify: true),
            "redirect=1 requests=50 vector=0x41 hold_ms=5 irqwait=1")
        XCTAssertEqual(BenchWorkload.redirect.vcpus, 2)
        let load = BenchLoad(workload: .randwrite, blockSize: 65536, qd: 4, requests: 10)
        XCTAssertEqual(
            load.guestCommandLine(holdMilliseconds: 5, verify: false),
            "qd=4 bs=65536 write_pct=100 requests=10 hold_ms=5 verify=0")
        let timed = BenchLoad(workload: .randread, blockSize: 4096, qd: 1, requests: 99, durationMilliseconds: 1500)
        XCTAssertEqual(
            timed.guestCommandLine(holdMilliseconds: 5, verify: true),
            "qd=1 bs=4096 write_pct=0 requests=99 hold_ms=5 duration_ms=1500")
        // The network workloads: their own frame size and depth, the host end's MAC for the guest.
        XCTAssertEqual(try BenchWorkload.parse("net-rr,net-stream"), [.netRoundTrip, .netStream])
        XCTAssertEqual(BenchWorkload.netRoundTrip.fixedShape?.qd, 1)
        XCTAssertEqual(BenchWorkload.netStream.fixedShape?.bytes, 1514)
        XCTAssertEqual(BenchWorkload.redirect.fixedShape?.qd, 1)
        XCTAssertNil(BenchWorkload.randread.fixedShape)
        let stream = BenchLoad(workload: .netStream, blockSize: 1514, qd: 32, requests: 7, durationMilliseconds: 20)
        XCTAssertEqual(
            stream.guestCommandLine(holdMilliseconds: 5, verify: true),
            "net=1 stream=1 requests=7 hold_ms=5 duration_ms=20 peer_mac=0x020000770001")
        let roundTrips = BenchLoad(workload: .netRoundTrip, blockSize: 98, qd: 1, requests: 7)
        XCTAssertEqual(
            roundTrips.guestCommandLine(holdMilliseconds: 5, verify: true),
            "net=1 requests=7 hold_ms=5 peer_mac=0x020000770001")
    }

    /// The record's shape: what scripts and docs read from it.
    func testTheJSONRecordNamesEveryFigure() throws {
        let measurement = try XCTUnwrap(
            IOBenchResult(lines: [
                "iobench: histogram b79=3",
                "iobench: result requests=3 writes=1 errors=0 iops=7 lat_avg_ns=1000 lat_max_ns=1100",
            ])
        ).measurement
        let report = BenchReport(
            environment: .init(
                hvctlVersion: "v", hvctlCommit: nil, hostKernel: "k", cpuModel: "c", cpus: 2, kvmExecution: "e",
                qemuVersion: nil),
            options: .init(
                workloads: ["randrw"], blockSizes: [4096], qd: [1], modes: ["poll"], peers: [],
                qemuPollMaxNanoseconds: [], requests: 3, durationMilliseconds: nil,
                repeat: 1, disk: "pattern", pinning: "p"),
            cells: [.init(target: "hvctl-poll", workload: "randrw", blockSize: 4096, qd: 1, runs: [measurement])])
        let data = try JSONEncoder().encode(report)
        let document = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let cell = try XCTUnwrap((document["cells"] as? [[String: Any]])?.first)
        XCTAssertEqual(cell["workload"] as? String, "randrw")
        XCTAssertEqual(cell["blockSize"] as? Int, 4096)
        let latency = try XCTUnwrap(cell["latency"] as? [String: Any])
        for key in [
            "count", "meanNanoseconds", "p50Nanoseconds", "p90Nanoseconds", "p99Nanoseconds",
            "p999Nanoseconds", "maxNanoseconds",
        ] {
            XCTAssertNotNil(latency[key], key)
        }
        let run = try XCTUnwrap((cell["runs"] as? [[String: Any]])?.first)
        XCTAssertEqual(run["writes"] as? Int, 1)
        let buckets = try XCTUnwrap(run["latencyHistogram"] as? [[String: Any]])
        XCTAssertEqual(buckets.count, 1)
        XCTAssertEqual(buckets[0]["count"] as? Int, 3)
        XCTAssertEqual(buckets[0]["lowNanoseconds"] as? Int, 960, "bucket 79: 960 to 1023 ns")
    }

    /// The ratios: against QEMU's default, against the best QEMU polling limit measured, and against
    /// the host, each under the same load only.
    func testTheTableComparesWithQEMUsDefaultItsBestAndTheHost() {
        func cell(_ target: String, _ iops: Double, qd: Int = 1) -> BenchReport.Cell {
            BenchReport.Cell(
                target: target, workload: "randread", blockSize: 4096, qd: qd,
                runs: [BenchMeasurement(requests: 1, writes: 0, errors: 0, iops: iops, latencyMeanNanoseconds: 1)])
        }
        let report = BenchReport(
            environment: .init(
                hvctlVersion: "v", hvctlCommit: nil, hostKernel: "k", cpuModel: "c", cpus: 2, kvmExecution: "e",
                qemuVersion: nil),
            options: .init(
                workloads: ["randread"], blockSizes: [4096], qd: [1, 16], modes: ["poll"], peers: ["qemu", "host"],
                qemuPollMaxNanoseconds: [0], requests: 1, durationMilliseconds: nil, repeat: 1, disk: "pattern",
                pinning: "p"),
            cells: [
                cell("hvctl-poll", 300_000), cell("qemu", 100_000), cell("qemu-pmn=0", 150_000), cell("host", 600_000),
                cell("qemu", 1, qd: 16), cell("qemu-pmn=0", 1_000_000, qd: 16),
            ])
        let lines = BenchTable.lines(report)
        XCTAssertTrue(lines[0].contains("x qemu best"), lines[0])
        let rows = lines.map { $0.split(separator: " ").map(String.init) }
        let hvctl = rows.first { $0.first == "hvctl-poll" }
        XCTAssertEqual(hvctl.map { Array($0.suffix(3)) }, ["3.00", "2.00", "0.50"], "other depths do not count")
        let variant = rows.first { $0.first == "qemu-pmn=0" && $0[3] == "1" }
        XCTAssertEqual(variant.map { Array($0.suffix(3)) }, ["1.50", "-", "0.25"])
    }

    /// The redirect workload's result: both phases together as any run's figures, each phase on its
    /// own, and a table of the phases that compares their latency with QEMU's.
    func testTheRedirectWorkloadsPhasesAreReadAndTabled() throws {
        func run(halted: (UInt64, UInt64, UInt64), spinning: (UInt64, UInt64, UInt64)) throws -> BenchMeasurement {
            try XCTUnwrap(
                IOBenchResult(lines: [
                    "iobench: histogram b79=10",
                    "iobench: result test=redirect vector=65 requests=10 errors=0 kicks=0 ns=100000 iops=100000 "
                        + "lat_avg_ns=9000 lat_max_ns=20000 halted_cpu0=\(halted.0) halted_cpu1=\(halted.1) "
                        + "halted_lat_avg_ns=\(halted.2) halted_late=0 halted_ns=50000 spinning_cpu0=\(spinning.0) "
                        + "spinning_cpu1=\(spinning.1) spinning_lat_avg_ns=\(spinning.2) spinning_late=1 spinning_ns=50000",
                ])
            ).measurement
        }
        var hvctl = try run(halted: (5, 0, 8000), spinning: (1, 4, 10000))
        XCTAssertEqual(hvctl.requests, 10)
        XCTAssertEqual(hvctl.iops, 100_000)
        XCTAssertEqual(hvctl.latencyMeanNanoseconds, 9000)
        let figures = try XCTUnwrap(hvctl.redirect)
        XCTAssertEqual(figures.halted.interruptsOnVCPU0, 5)
        XCTAssertEqual(figures.spinning.interruptsOnVCPU1, 4)
        XCTAssertEqual(figures.spinning.lateInterrupts, 1)
        XCTAssertEqual(figures.halted.nanoseconds, 50000)
        XCTAssertNil(try XCTUnwrap(IOBenchResult(lines: ["iobench: result requests=1 iops=1"])).measurement.redirect)

        // hvctl's counters between the marks: vCPU 1 woke twice, 5 of 9 interrupts were redirected.
        var start = BenchHvctlRun.Sample()
        start.interrupts = 1
        var end = start
        end.interrupts = 10
        end.secondVCPUWakeups = 2
        end.redirected = 5
        end.addExitsAndInterrupts(since: start, to: &hvctl)
        XCTAssertEqual(hvctl.redirect?.secondVCPUWakeupsPerRequest, 0.2)
        XCTAssertEqual(hvctl.redirect?.redirectedInterrupts, 5)
        XCTAssertEqual(hvctl.redirect?.deviceInterrupts, 9)

        let qemu = try run(halted: (0, 5, 16000), spinning: (0, 5, 5000))
        let report = BenchReport(
            environment: .init(
                hvctlVersion: "v", hvctlCommit: nil, hostKernel: "k", cpuModel: "c", cpus: 2, kvmExecution: "e",
                qemuVersion: nil),
            options: .init(
                workloads: ["redirect"], blockSizes: [4096], qd: [1], modes: ["hybrid"], peers: ["qemu"],
                qemuPollMaxNanoseconds: [], requests: 5, durationMilliseconds: nil, repeat: 1, disk: "pattern",
                pinning: "p"),
            cells: [
                BenchReport.Cell(target: "hvctl-hybrid", workload: "redirect", blockSize: 4096, qd: 1, runs: [hvctl]),
                BenchReport.Cell(target: "qemu", workload: "redirect", blockSize: 4096, qd: 1, runs: [qemu]),
            ])
        let rows = BenchTable.redirectRows(report)
        XCTAssertEqual(rows.count, 3)
        XCTAssertEqual(rows[1], ["hvctl-hybrid", "5/0", "8.0", "1/4", "10.0", "0.000", "0.200", "5/9", "0.50", "2.00"])
        XCTAssertEqual(rows[2].suffix(3), ["-", "-", "-"], "QEMU has no redirected route, and is the reference")
        let lines = BenchTable.lines(report)
        XCTAssertEqual(lines.count, 3 + 1 + 3, "the main table, a blank line, the phases' table")
        XCTAssertTrue(BenchTable.markdown(report).contains { $0.hasPrefix("| target | halted: irqs vCPU0/vCPU1") })
    }

    /// A record read back (`hvctl bench-report`) shows the same table as the run that wrote it,
    /// the histograms included; a file that is not a record is refused naming what is missing.
    func testARecordReadBackShowsTheSameTable() throws {
        let run = try XCTUnwrap(
            IOBenchResult(lines: [
                "iobench: histogram b79=900 b106=98 b159=2",
                "iobench: result requests=1000 writes=0 errors=0 iops=500000 lat_avg_ns=2000 lat_max_ns=1000123",
            ])
        ).measurement
        let report = BenchReport(
            environment: .init(
                hvctlVersion: "v", hvctlCommit: "abc", hostKernel: "k", cpuModel: "c", cpus: 2, kvmExecution: "e",
                qemuVersion: nil),
            options: .init(
                workloads: ["randread"], blockSizes: [4096], qd: [1], modes: ["poll"], peers: ["host"],
                qemuPollMaxNanoseconds: [], requests: 1000, durationMilliseconds: nil, repeat: 1, disk: "pattern",
                pinning: "p"),
            cells: [
                .init(target: "hvctl-poll", workload: "randread", blockSize: 4096, qd: 1, runs: [run]),
                .init(
                    target: "host", workload: "randread", blockSize: 4096, qd: 1,
                    runs: [BenchMeasurement(requests: 9, writes: 0, errors: 0, iops: 1e6, latencyMeanNanoseconds: 900)]),
            ])
        let data = try JSONEncoder().encode(report)
        let path = NSTemporaryDirectory() + "bench-record-\(getpid()).json"
        defer { unlink(path) }
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: data))
        let loaded = try BenchReportCommand.load(path)
        XCTAssertEqual(BenchTable.lines(loaded), BenchTable.lines(report))
        XCTAssertEqual(loaded.cells[0].runs[0].latencyHistogram, run.latencyHistogram)
        XCTAssertEqual(BenchTable.markdown(report).count, 4, "header, rule, two rows")

        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(#"{"cells":[]}"#.utf8)))
        XCTAssertThrowsError(try BenchReportCommand.load(path)) { error in
            XCTAssertTrue("\(error)".contains("no environment"), "\(error)")
        }
        XCTAssertTrue(
            FileManager.default.createFile(
                atPath: path,
                contents: Data(String(decoding: data, as: UTF8.self).replacingOccurrences(of: "960", with: "961").utf8))
        )
        XCTAssertThrowsError(try BenchReportCommand.load(path), "a bucket bound no bucket has")
    }
}
