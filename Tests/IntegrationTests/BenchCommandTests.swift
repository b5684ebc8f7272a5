import Foundation
import Glibc
import TestSupport
import XCTest

/// `hvctl bench` end to end, short: hvctl, QEMU and the host loop in one run, the JSON's figures
/// present and consistent, nothing left behind, and Ctrl-C keeping what was measured.
final class BenchCommandTests: XCTestCase {
    var scratch: URL!

    override func setUpWithError() throws {
        try Toolchain.requireArtifacts()
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("bench-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    /// The pattern directories bench makes and must remove.
    func benchDirectories() -> Set<String> {
        Set(
            ((try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []).filter {
                $0.hasPrefix("hvctl-bench-")
            })
    }

    /// The plot's shapes as python's XML parser reads them (a file that is not well-formed XML fails).
    func plotShapes(_ path: String) throws -> (polylines: [String], texts: [String]) {
        let script = """
            import sys, xml.etree.ElementTree as E
            root = E.parse(sys.argv[1]).getroot()
            ns = '{http://www.w3.org/2000/svg}'
            assert root.tag == ns + 'svg', root.tag
            for e in root.iter(ns + 'polyline'): print('polyline ' + e.get('points'))
            for e in root.iter(ns + 'text'): print('text ' + (e.text or ''))
            """
        let result = try Toolchain.run("/usr/bin/python3", ["-c", script, path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        return (
            lines.filter { $0.hasPrefix("polyline ") }.map { String($0.dropFirst(9)) },
            lines.filter { $0.hasPrefix("text ") }.map { String($0.dropFirst(5)) }
        )
    }

    func bench(_ arguments: [String]) throws -> (Toolchain.Result, [String: Any]) {
        let json = scratch.appendingPathComponent("bench-\(UUID().uuidString.prefix(6)).json").path
        let result = try Toolchain.run(
            Toolchain.hvctl, ["bench", "--guest", Toolchain.iobenchGuest, "--json", json] + arguments)
        XCTAssertEqual(result.status, 0, result.stderr)
        let data = try Data(contentsOf: URL(fileURLWithPath: json))
        return (result, try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any]))
    }

    func cells(_ document: [String: Any]) -> [String: [String: Any]] {
        var cells: [String: [String: Any]] = [:]
        for cell in (document["cells"] as? [[String: Any]]) ?? [] {
            let load = "\(cell["workload"] as? String ?? "?") bs=\(cell["blockSize"] as? Int ?? 0)"
            cells["\(cell["target"] as? String ?? "?") \(load) qd=\(cell["qd"] as? Int ?? 0)"] = cell
        }
        return cells
    }

    func testHvctlQEMUAndTheHostSideBySide() throws {
        let before = benchDirectories()
        let plot = scratch.appendingPathComponent("bench.svg").path
        let (result, document) = try bench([
            "--qd", "1,4", "--mode", "poll", "--peer", "host,qemu", "--requests", "20000", "--repeat", "1",
            "--plot", plot,
        ])
        XCTAssertEqual(benchDirectories(), before, "the pattern file and its directory are removed")
        let environment = try XCTUnwrap(document["environment"] as? [String: Any])
        XCTAssertNotNil(environment["qemuVersion"] as? String)
        XCTAssertGreaterThan(environment["cpus"] as? Int ?? 0, 0)
        let options = try XCTUnwrap(document["options"] as? [String: Any])
        let pinning = try XCTUnwrap(options["pinning"] as? String)
        XCTAssertTrue(pinning.contains("QEMU: iothread on CPU "), "both peers' placement is recorded: \(pinning)")
        let cells = cells(document)
        XCTAssertEqual(
            Set(cells.keys),
            Set(
                ["hvctl-poll", "qemu", "host"].flatMap {
                    ["\($0) randread bs=4096 qd=1", "\($0) randread bs=4096 qd=4"]
                }))
        for (name, cell) in cells {
            let runs = try XCTUnwrap(cell["runs"] as? [[String: Any]], name)
            XCTAssertEqual(runs.count, 1, name)
            let run = runs[0]
            XCTAssertEqual(run["requests"] as? Int, 20000, name)
            XCTAssertEqual(run["errors"] as? Int, 0, "\(name): every block read verified")
            XCTAssertGreaterThan(run["iops"] as? Double ?? 0, 0, name)
            XCTAssertGreaterThan(run["latencyMeanNanoseconds"] as? Int ?? 0, 0, name)
            if !name.hasPrefix("host") {
                // The guest's own histogram: every measured request in it, percentiles in order.
                let buckets = try XCTUnwrap(run["latencyHistogram"] as? [[String: Any]], name)
                XCTAssertEqual(buckets.reduce(0) { $0 + ($1["count"] as? Int ?? 0) }, 20000, name)
                let latency = try XCTUnwrap(cell["latency"] as? [String: Any], name)
                XCTAssertEqual(latency["count"] as? Int, 20000, name)
                let order = ["p50Nanoseconds", "p90Nanoseconds", "p99Nanoseconds", "p999Nanoseconds", "maxNanoseconds"]
                    .map { latency[$0] as? Int ?? 0 }
                XCTAssertGreaterThan(order[0], 0, name)
                XCTAssertEqual(order, order.sorted(), "\(name): \(latency)")
            }
            if name.hasPrefix("hvctl") {
                XCTAssertNotNil(run["exitsPerRequest"] as? Double, name)
                XCTAssertEqual(run["kicksPerRequest"] as? Double, 0, "\(name): poll mode takes no kicks")
                let device = try XCTUnwrap(run["deviceLatency"] as? [String: Any], name)
                XCTAssertEqual(device["count"] as? Int, 20000, "\(name): the device saw each measured read")
                XCTAssertNotNil(run["sideCoreNanosecondsPerRequest"] as? Double, name)
            }
            if name.hasPrefix("qemu") {
                // KVM's own count (QMP query-stats): each kick QEMU's guest makes is an exit at least.
                let exits = try XCTUnwrap(run["exitsPerRequest"] as? Double, "\(name): QEMU's KVM exits")
                let kicks = try XCTUnwrap(run["kicksPerRequest"] as? Double, name)
                XCTAssertGreaterThan(kicks, 0, "\(name): QEMU's guest kicks its queue")
                XCTAssertGreaterThanOrEqual(exits, kicks, name)
            }
        }
        let table = result.stdout.components(separatedBy: "\n")
        XCTAssertTrue(table.first?.hasPrefix("target") ?? false, result.stdout)
        XCTAssertEqual(
            table.filter { $0.hasPrefix("hvctl-poll ") || $0.hasPrefix("qemu ") || $0.hasPrefix("host ") }.count, 6)

        // The plot: one IOPS line per target through both depths, a latency row per cell, a legend.
        let shapes = try plotShapes(plot)
        XCTAssertEqual(shapes.polylines.count, 3, "\(shapes.polylines)")
        for line in shapes.polylines { XCTAssertEqual(line.split(separator: " ").count, 2, line) }
        for target in ["hvctl-poll", "qemu", "host"] {
            for qd in [1, 4] { XCTAssertTrue(shapes.texts.contains("\(target) qd=\(qd)"), "no latency row \(target)") }
        }
        for target in ["hvctl-poll", "qemu", "host", "1", "4", "queue depth"] {
            XCTAssertTrue(shapes.texts.contains(target), "no text \(target): \(shapes.texts)")
        }
    }

    func testTheNullBackendNeedsNoVerificationAndHasNoHostPeer() throws {
        let (_, document) = try bench([
            "--null", "--qd", "8", "--mode", "hybrid", "--peer", "host", "--requests", "20000", "--repeat", "2",
        ])
        let cells = cells(document)
        XCTAssertEqual(Set(cells.keys), ["hvctl-hybrid randread bs=4096 qd=8"], "no host loop without a file")
        let cell = cells["hvctl-hybrid randread bs=4096 qd=8"]
        let runs = try XCTUnwrap(cell?["runs"] as? [[String: Any]])
        XCTAssertEqual(runs.count, 2)
        XCTAssertEqual(runs.map { $0["errors"] as? Int }, [0, 0])
        let latency = try XCTUnwrap(cell?["latency"] as? [String: Any])
        XCTAssertEqual(latency["count"] as? Int, 40000, "both repeats' requests in one distribution")
        let iops = try XCTUnwrap(cell?["iops"] as? [String: Double])
        XCTAssertLessThanOrEqual(iops["min"] ?? 0, iops["median"] ?? 0)
        XCTAssertLessThanOrEqual(iops["median"] ?? 0, iops["max"] ?? 0)
    }

    /// Writes and larger requests, by every peer: the writes put the pattern back, so the reads of
    /// the mixed workload that follow (and every later cell) still verify.
    func testWriteWorkloadsKeepThePatternForEveryPeer() throws {
        let (_, document) = try bench([
            "--workload", "randwrite,randrw", "--bs", "4k,64k", "--qd", "4", "--mode", "poll", "--peer", "host,qemu",
            "--requests", "2000", "--repeat", "1",
        ])
        let cells = cells(document)
        XCTAssertEqual(cells.count, 12, "\(cells.keys.sorted())")
        for (name, cell) in cells {
            let run = try XCTUnwrap((cell["runs"] as? [[String: Any]])?.first, name)
            XCTAssertEqual(run["requests"] as? Int, 2000, name)
            XCTAssertEqual(run["errors"] as? Int, 0, "\(name): every read verified, every write completed")
            let writes = run["writes"] as? Int ?? -1
            if name.contains("randwrite") {
                XCTAssertEqual(writes, 2000, name)
            } else {
                XCTAssertTrue((600...1400).contains(writes), "\(name): about half writes, \(writes)")
            }
        }
        let options = try XCTUnwrap(document["options"] as? [String: Any])
        XCTAssertEqual(options["blockSizes"] as? [Int], [4096, 65536])
    }

    /// Timed runs, and QEMU at a polling limit of its iothread besides its default: every target
    /// runs for the time given and hands over as many requests as its histogram holds.
    func testTimedRunsAndQEMUsPollingLimits() throws {
        let (result, document) = try bench([
            "--duration", "0.4", "--qd", "2", "--mode", "poll", "--peer", "host,qemu", "--qemu-poll-max-ns", "0",
            "--repeat", "1",
        ])
        let cells = cells(document)
        XCTAssertEqual(
            Set(cells.keys), Set(["hvctl-poll", "qemu", "qemu-pmn=0", "host"].map { "\($0) randread bs=4096 qd=2" }))
        for (name, cell) in cells {
            let run = try XCTUnwrap((cell["runs"] as? [[String: Any]])?.first, name)
            let requests = run["requests"] as? Int ?? 0
            XCTAssertGreaterThan(requests, 0, name)
            XCTAssertLessThan(requests, 100_000_000_000, "\(name): the time ended the run, not the cap")
            XCTAssertEqual(run["errors"] as? Int, 0, name)
            if !name.hasPrefix("host") {
                let latency = try XCTUnwrap(cell["latency"] as? [String: Any], name)
                XCTAssertEqual(latency["count"] as? Int, requests, "\(name): each request in the histogram")
            }
        }
        let options = try XCTUnwrap(document["options"] as? [String: Any])
        XCTAssertEqual(options["durationMilliseconds"] as? Int, 400)
        XCTAssertEqual(options["qemuPollMaxNanoseconds"] as? [Int], [0])
        XCTAssertTrue(result.stdout.contains("x qemu best"), result.stdout)
    }

    /// docs/benchmarks.md's tables are what `hvctl bench-report` makes of the records beside them,
    /// and a record shows the same table it was measured with.
    func testTheBenchmarkDocsAreGeneratedFromTheirRecords() throws {
        let script = Toolchain.repository.appendingPathComponent("benchmarks/render-bench-docs").path
        let check = try Toolchain.run("/usr/bin/python3", [script, "--check", "--hvctl", Toolchain.hvctl])
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr)

        let json = scratch.appendingPathComponent("record.json").path
        let measured = try Toolchain.run(
            Toolchain.hvctl,
            [
                "bench", "--guest", Toolchain.iobenchGuest, "--null", "--qd", "2", "--mode", "poll", "--peer", "none",
                "--requests", "5000", "--repeat", "2", "--json", json,
            ])
        XCTAssertEqual(measured.status, 0, measured.stderr)
        let shown = try Toolchain.run(Toolchain.hvctl, ["bench-report", json])
        XCTAssertEqual(shown.status, 0, shown.stderr)
        XCTAssertEqual(shown.stdout, measured.stdout)
    }

    /// With --irq the device raises completion interrupts (at most one per request: one per round
    /// that completed some), with hvctl's coalescing on and off side by side; QEMU's guest asks for
    /// them too.
    func testCompletionInterruptsWithCoalescingOnAndOff() throws {
        let (_, document) = try bench([
            "--irq", "--irq-coalesce", "on,off", "--qd", "8", "--mode", "poll,notify", "--peer", "qemu",
            "--requests", "20000", "--repeat", "1",
        ])
        let cells = cells(document)
        XCTAssertEqual(
            Set(cells.keys),
            Set(["hvctl-poll", "hvctl-poll-nocoalesce", "hvctl-notify", "qemu"].map { "\($0) randread bs=4096 qd=8" }))
        for (name, cell) in cells where name.hasPrefix("hvctl") {
            let run = try XCTUnwrap((cell["runs"] as? [[String: Any]])?.first, name)
            XCTAssertEqual(run["errors"] as? Int, 0, name)
            let interrupts = try XCTUnwrap(run["interruptsPerRequest"] as? Double, name)
            XCTAssertGreaterThan(interrupts, 0, "\(name): the guest asked for interrupts")
            XCTAssertLessThanOrEqual(interrupts, 1, name)
        }
        let options = try XCTUnwrap(document["options"] as? [String: Any])
        XCTAssertEqual(options["interrupts"] as? Bool, true)
        XCTAssertEqual(options["interruptCoalescing"] as? [String], ["on", "off"])
    }

    /// `--rate`: an open loop (a request every 1/rate s while fewer than qd are out), as an
    /// interrupt-driven guest under a steady load makes; no host row (its loop is closed).
    func testAnOpenLoopAtAFixedRate() throws {
        let (_, document) = try bench([
            "--irq", "--rate", "2000", "--qd", "8", "--mode", "hybrid", "--peer", "host,qemu", "--requests", "3000",
            "--repeat", "1",
        ])
        let cells = cells(document)
        XCTAssertEqual(Set(cells.keys), Set(["hvctl-hybrid", "qemu"].map { "\($0) randread bs=4096 qd=8" }))
        for (name, cell) in cells {
            let run = try XCTUnwrap((cell["runs"] as? [[String: Any]])?.first, name)
            XCTAssertEqual(run["requests"] as? Int, 3000, name)
            XCTAssertEqual(run["errors"] as? Int, 0, name)
            // Paced at the rate asked, far below what either reaches in a closed loop (a closed loop
            // would show tens of thousands); the slack is the guest's clock reads.
            let iops = run["iops"] as? Double ?? 0
            XCTAssertTrue((2000 * 0.9...2000 * 1.05).contains(iops), "\(name): \(iops) IOPS")
        }
        XCTAssertEqual((document["options"] as? [String: Any])?["rate"] as? Int, 2000)
    }

    /// `--vms 2`: hvctl's two VMs share one side core, QEMU runs two processes, the host two loops;
    /// each cell's figures are both VMs' together, every block verified, and the pattern files go.
    func testSeveralVMsAtOnceAddUp() throws {
        let before = benchDirectories()
        let (_, document) = try bench([
            "--vms", "2", "--qd", "4", "--mode", "poll", "--peer", "host,qemu", "--requests", "5000", "--repeat", "1",
        ])
        XCTAssertEqual(benchDirectories(), before, "both pattern files and their directory are removed")
        let options = try XCTUnwrap(document["options"] as? [String: Any])
        XCTAssertEqual(options["vms"] as? Int, 2)
        XCTAssertEqual(options["sideCores"] as? Int, 1)
        XCTAssertTrue((options["pinning"] as? String ?? "").contains("VM i's iothread"), "\(options)")
        let cells = cells(document)
        XCTAssertEqual(Set(cells.keys), Set(["hvctl-poll", "qemu", "host"].map { "\($0) randread bs=4096 qd=4" }))
        for (name, cell) in cells {
            let run = try XCTUnwrap((cell["runs"] as? [[String: Any]])?.first, name)
            XCTAssertEqual(run["requests"] as? Int, 10000, "\(name): both VMs' requests")
            XCTAssertEqual(run["errors"] as? Int, 0, "\(name): every block read verified")
            XCTAssertGreaterThan(run["iops"] as? Double ?? 0, 0, name)
            if !name.hasPrefix("host") {
                let buckets = try XCTUnwrap(run["latencyHistogram"] as? [[String: Any]], name)
                XCTAssertEqual(buckets.reduce(0) { $0 + ($1["count"] as? Int ?? 0) }, 10000, "\(name): both histograms")
            }
            if name.hasPrefix("hvctl") {
                let device = try XCTUnwrap(run["deviceLatency"] as? [String: Any], name)
                XCTAssertEqual(device["count"] as? Int, 10000, "\(name): the device saw both VMs' reads")
                XCTAssertNotNil(run["exitsPerRequest"] as? Double, name)
                XCTAssertNotNil(run["sideCoreNanosecondsPerRequest"] as? Double, name)
            }
        }
    }

    /// Echo round trips and a UDP stream over a TAP bench makes (hvctl's NIC, QEMU's -netdev tap)
    /// and sets up: every round trip answered and timed into the guest's histogram, every frame
    /// sent, no host row (it has no network counterpart), and no TAP left behind.
    func testNetworkRoundTripsAndAStreamOverATAP() throws {
        let tapsBefore = Set(try FileManager.default.contentsOfDirectory(atPath: "/sys/class/net"))
        let (result, document) = try bench([
            "--workload", "net-rr,net-stream", "--mode", "poll", "--peer", "host,qemu", "--requests", "3000",
            "--repeat", "1",
        ])
        XCTAssertEqual(
            Set(try FileManager.default.contentsOfDirectory(atPath: "/sys/class/net")), tapsBefore,
            "every TAP went with its VM")
        let cells = cells(document)
        XCTAssertEqual(
            Set(cells.keys),
            Set([
                "hvctl-poll net-rr bs=98 qd=1", "qemu net-rr bs=98 qd=1", "hvctl-poll net-stream bs=1514 qd=32",
                "qemu net-stream bs=1514 qd=32",
            ]), result.stdout)
        for (name, cell) in cells {
            let run = try XCTUnwrap((cell["runs"] as? [[String: Any]])?.first, name)
            XCTAssertEqual(run["requests"] as? Int, 3000, "\(name): every round trip answered, every frame sent")
            XCTAssertEqual(run["errors"] as? Int, 0, name)
            XCTAssertNotNil(run["exitsPerRequest"] as? Double, name)
            if name.contains("net-rr") {
                let buckets = try XCTUnwrap(run["latencyHistogram"] as? [[String: Any]], name)
                XCTAssertEqual(buckets.reduce(0) { $0 + ($1["count"] as? Int ?? 0) }, 3000, "\(name): each timed")
            }
        }
    }

    func testBadInputIsOneLine() throws {
        for (arguments, expected) in [
            (["--qd", "0"], "--qd 0"), (["--mode", "fast"], "--mode fast"), (["--peer", "vmware"], "--peer vmware"),
            (["--workload", "seqread"], "--workload seqread"), (["--bs", "6k"], "--bs 6k"),
            (["--duration", "0"], "--duration 0"), (["--irq-coalesce", "off"], "--irq-coalesce off: only with --irq"),
            (["--irq", "--irq-coalesce", "maybe"], "--irq-coalesce maybe"),
            (["--qemu-poll-max-ns", "x"], "--qemu-poll-max-ns x"),
            (["--qemu-poll-max-ns", "0"], "--qemu-poll-max-ns: only with --peer qemu"),
            (["--null", "--disk", "/tmp/x"], "--null"),
            (["--json", "/nonexistent/dir/b.json"], "--json /nonexistent/dir/b.json"),
            (["--plot", "/nonexistent/dir/b.svg"], "--plot /nonexistent/dir/b.svg"),
            (["--guest", "/nonexistent/iobench.elf"], "--guest /nonexistent/iobench.elf"),
            (["--vms", "0"], "--vms 0"), (["--side-cores", "0"], "--side-cores 0"),
            (
                ["--vms", "2", "--disk", "/tmp/x", "--workload", "randrw"],
                "--disk /tmp/x: --vms 2 with a write workload"
            ),
        ] {
            let result = try Toolchain.run(Toolchain.hvctl, ["bench", "--peer", "none"] + arguments)
            XCTAssertNotEqual(result.status, 0, "\(arguments)")
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
            XCTAssertTrue(result.stderr.hasPrefix("hvctl: \(expected)"), result.stderr)
        }
    }

    /// The redirect workload (two vCPUs, QD1 reads whose interrupts either may take while vCPU 1
    /// halts, then spins) under hvctl with redirection off and on, and under QEMU: each phase's
    /// interrupts and latency, vCPU 1's wake-ups, and (hvctl) the interrupts that took a redirected route.
    func testTheRedirectWorkloadShowsWhereInterruptsWent() throws {
        let requests = 2000
        let (result, document) = try bench([
            "--workload", "redirect", "--mode", "notify", "--irq-redirect", "off,on", "--peer", "qemu,host",
            "--requests", "\(requests)", "--repeat", "1",
        ])
        XCTAssertTrue(result.stdout.contains("halted: irqs vCPU0/vCPU1"), result.stdout)
        let cells = cells(document)
        XCTAssertEqual(
            Set(cells.keys),
            [
                "hvctl-notify-redirect-off redirect bs=4096 qd=1", "hvctl-notify-redirect-on redirect bs=4096 qd=1",
                "qemu redirect bs=4096 qd=1",
            ], "no host row: the host loop takes no interrupts")
        for (name, cell) in cells {
            let run = try XCTUnwrap((cell["runs"] as? [[String: Any]])?.first, name)
            XCTAssertEqual(run["requests"] as? Double, Double(2 * requests), name)
            XCTAssertEqual(run["errors"] as? Double, 0, name)
            let figures = try XCTUnwrap(run["redirect"] as? [String: Any], name)
            XCTAssertNotNil(figures["secondVCPUWakeupsPerRequest"] as? Double, name)
            for phase in ["halted", "spinning"] {
                let figures = try XCTUnwrap(figures[phase] as? [String: Double], name)
                XCTAssertGreaterThan(figures["latencyMeanNanoseconds"] ?? 0, 0, "\(name) \(phase)")
                XCTAssertGreaterThan(figures["nanoseconds"] ?? 0, 0, "\(name) \(phase)")
                // One completion interrupt per read at most (the device may coalesce none here: notify mode).
                XCTAssertLessThanOrEqual(
                    (figures["interruptsOnVCPU0"] ?? 0) + (figures["interruptsOnVCPU1"] ?? 0), Double(requests),
                    "\(name) \(phase)")
            }
            if name.hasPrefix("hvctl") {
                let redirected = try XCTUnwrap(figures["redirectedInterrupts"] as? Double, name)
                let interrupts = try XCTUnwrap(figures["deviceInterrupts"] as? Double, name)
                XCTAssertLessThanOrEqual(redirected, interrupts, name)
                if name.contains("redirect-off") {
                    XCTAssertEqual(redirected, 0, "redirection off sends nothing through a redirected route")
                } else {
                    // vCPU 1 halted: the interrupts KVM would wake it with go to vCPU 0 instead.
                    XCTAssertGreaterThan(redirected, 0, name)
                    let halted = try XCTUnwrap(figures["halted"] as? [String: Double])
                    XCTAssertGreaterThan(
                        halted["interruptsOnVCPU0"] ?? 0, halted["interruptsOnVCPU1"] ?? 0, "\(halted)")
                }
            }
        }
        for (arguments, expected) in [
            (["--duration", "1"], "--duration 1.0: the redirect workload makes --requests reads per phase"),
            (["--vms", "2"], "--vms 2: the redirect workload runs one VM"),
            (["--null"], "--null: the redirect workload"),
            (["--rate", "1000"], "--rate 1000: for the block workloads only"),
        ] {
            let result = try Toolchain.run(Toolchain.hvctl, ["bench", "--workload", "redirect"] + arguments)
            XCTAssertNotEqual(result.status, 0, "\(arguments)")
            XCTAssertTrue(result.stderr.hasPrefix("hvctl: \(expected)"), result.stderr)
        }
    }

    /// `hvctl bench fio` boots Linux guests: on a PVM host it says where it runs instead (one line,
    /// before anything is made); elsewhere it measures. Bad input is one line either way.
    func testBenchFioRunsWhereLinuxGuestsBootAndSaysWhereElse() throws {
        for (arguments, expected) in [
            (["--workload", "seqread"], "--workload seqread"), (["--qd", "300"], "--qd 300"),
            (["--irq-redirect", "sometimes"], "--irq-redirect sometimes"),
            (["--kernel", "/nonexistent/bzImage"], "--kernel /nonexistent/bzImage"),
        ] {
            let result = try Toolchain.run(Toolchain.hvctl, ["bench", "fio", "--peer", "none"] + arguments)
            XCTAssertNotEqual(result.status, 0, "\(arguments)")
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
            XCTAssertTrue(result.stderr.hasPrefix("hvctl: \(expected)"), result.stderr)
        }
        let before = benchDirectories()
        let result = try Toolchain.run(
            Toolchain.hvctl,
            [
                "bench", "fio", "--peer", "none", "--mode", "hybrid", "--qd", "1", "--duration", "1",
                "--repeat", "1",
            ])
        if FileManager.default.fileExists(atPath: "/sys/module/kvm_pvm") {
            XCTAssertNotEqual(result.status, 0)
            XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
            XCTAssertTrue(result.stderr.contains("PVM") && result.stderr.contains("benchmarks/io.sh"), result.stderr)
            XCTAssertEqual(result.stdout, "")
        } else {
            XCTAssertEqual(result.status, 0, result.stderr)
            XCTAssertTrue(result.stdout.contains("hvctl-hybrid  fio-randread"), result.stdout)
        }
        XCTAssertEqual(benchDirectories(), before, "a scratch directory left behind")
    }

    /// SIGINT during a run: the run ends, the table shows the runs that finished, the exit status
    /// says which signal, and the pattern file is gone.
    func testCtrlCKeepsWhatWasMeasuredAndLeavesNothingBehind() throws {
        let before = benchDirectories()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Toolchain.hvctl)
        process.arguments = [
            "bench", "--guest", Toolchain.iobenchGuest, "--qd", "1", "--mode", "poll", "--peer", "none",
            "--requests", "1000000", "--repeat", "5",
        ]
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // The first finished run prints its progress line; interrupt the second.
        var progress = Data()
        while !String(decoding: progress, as: UTF8.self).contains("run 1/5:") {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            progress += chunk
        }
        kill(process.processIdentifier, SIGINT)
        let output = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errors = String(decoding: progress + err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 128 + SIGINT, errors)
        XCTAssertTrue(errors.contains("stopped by signal 2"), errors)
        XCTAssertFalse(errors.contains("run 2/5:"), "the run under way was stopped, not finished: \(errors)")
        let rows = output.components(separatedBy: "\n").filter { $0.hasPrefix("hvctl-poll ") }
        XCTAssertEqual(rows.count, 1, "the finished run is in the table: \(output)")
        XCTAssertEqual(benchDirectories(), before, "the pattern file and its directory are removed")
    }
}
