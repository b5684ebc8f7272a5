import Foundation
import Glibc
import TestSupport
import XCTest

/// The HTTP API of a running `hvctl run --api-socket`, driven as users and tools drive it: curl,
/// hvctl's own client commands, promtool on /metrics, openapi-spec-validator on docs/api.yaml and
/// schemathesis against the live server. The guest is iobench (native speed on this host).
final class APITests: IOBenchDiskTestCase {
    /// A `hvctl run` in the background, its output in files.
    final class Running {
        let process = Process()
        let stdout: URL
        let stderr: URL

        init(_ arguments: [String], in directory: URL) throws {
            stdout = directory.appendingPathComponent("hvctl-\(UUID().uuidString.prefix(6)).out")
            stderr = stdout.deletingPathExtension().appendingPathExtension("err")
            FileManager.default.createFile(atPath: stdout.path, contents: nil)
            FileManager.default.createFile(atPath: stderr.path, contents: nil)
            process.executableURL = URL(fileURLWithPath: Toolchain.hvctl)
            process.arguments = ["run"] + arguments
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = try FileHandle(forWritingTo: stdout)
            process.standardError = try FileHandle(forWritingTo: stderr)
            try process.run()
        }

        var output: String { (try? String(contentsOf: stdout, encoding: .utf8)) ?? "" }
        var errors: String { (try? String(contentsOf: stderr, encoding: .utf8)) ?? "" }

        /// Waits for the exit (deadline `seconds`); its status, or nil if it still runs.
        func exitStatus(within seconds: Double) -> Int32? {
            guard eventually(seconds: seconds, { !self.process.isRunning }) else { return nil }
            return process.terminationStatus
        }

        deinit {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
    }

    var socket: String { scratch.appendingPathComponent("api.sock").path }

    /// hvctl with iobench reading `requests` blocks and the API on `socket`; returns once it answers.
    func start(requests: Int, extra: [String] = []) throws -> Running {
        let running = try Running(
            [
                "--kernel", Toolchain.iobenchGuest, "--memory", "256", "--disk", "path=\(disk!),readonly=on",
                "--cmdline", "qd=4 requests=\(requests) hold_ms=20", "--api-socket", socket,
            ] + extra, in: scratch)
        XCTAssertTrue(
            eventually(seconds: 20) { (try? self.curl(["/api/v1/vmm.ping"]))?.status == 200 },
            "the API answers: \(running.errors)")
        return running
    }

    /// curl over the socket: the HTTP status and the body.
    func curl(_ arguments: [String], method: String = "GET", body: String? = nil) throws -> (status: Int, body: String)
    {
        var options = ["-s", "--max-time", "10", "--unix-socket", socket, "-X", method, "-w", "\n%{http_code}"]
        if let body { options += ["-H", "Content-Type: application/json", "--data", body] }
        let path = arguments.last!
        let result = try Toolchain.run("/usr/bin/curl", options + arguments.dropLast() + ["http://localhost\(path)"])
        let lines = result.stdout.components(separatedBy: "\n")
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    func json(_ text: String) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], text)
    }

    func completed(_ statistics: [String: Any]) -> Int {
        ((statistics["devices"] as? [[String: Any]]) ?? []).flatMap { ($0["queues"] as? [[String: Any]]) ?? [] }
            .reduce(0) { $0 + ($1["requests"] as? Int ?? 0) }
    }

    func hvctl(_ arguments: [String]) throws -> Toolchain.Result { try Toolchain.run(Toolchain.hvctl, arguments) }

    func testEveryEndpointOverCurlAndTheClientCommandsWithPauseAndResumeLosingNothing() throws {
        // Enough reads that the guest is still at it when the test pauses it: 150 000 finished
        // within the test's first second once the side core reached ~0.8M IOPS (CI 24).
        let requests = 5_000_000
        // A NIC too (its TAP made by hvctl and gone with it), for its queues' metrics.
        let running = try start(requests: requests, extra: ["--io-mode", "poll", "--net", "tap=hvapitest0"])

        let ping = try json(try curl(["/api/v1/vmm.ping"]).body)
        XCTAssertEqual(ping["pid"] as? Int32, running.process.processIdentifier)
        XCTAssertEqual(ping["apiVersion"] as? String, "1")
        XCTAssertEqual(ping["vms"] as? [String], ["vm0"])
        let version = try hvctl(["--version"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(ping["version"] as? String, version, "hvctl's own version")
        let features = try XCTUnwrap(ping["features"] as? [String])
        XCTAssertTrue(Set(["virtio-blk", "virtio-net", "metrics", "side-cores"]).isSubset(of: features), "\(features)")

        let info = try json(try hvctl(["info", "--socket", socket]).stdout)
        XCTAssertEqual(info["state"] as? String, "running")
        XCTAssertEqual(info["ioMode"] as? String, "poll")
        XCTAssertEqual((info["disks"] as? [[String: Any]])?.first?["readonly"] as? Bool, true)

        // Pause: nothing moves; resume: it goes on, and the guest's reads all verify at the end.
        XCTAssertEqual(try hvctl(["pause", "--socket", socket]).status, 0)
        XCTAssertEqual(try json(try curl(["/api/v1/vm.info"]).body)["state"] as? String, "paused")
        let paused = try json(try hvctl(["stats", "--socket", socket]).stdout)
        usleep(300_000)
        let later = try json(try hvctl(["stats", "--socket", socket]).stdout)
        XCTAssertEqual(completed(later), completed(paused), "no request completes while paused")
        XCTAssertLessThan(completed(paused), requests, "paused before the guest finished")
        XCTAssertGreaterThan(later["timestamp"] as? Double ?? 0, paused["timestamp"] as? Double ?? 0)
        // Every completed request is in the queue's latency distribution.
        let queue = try XCTUnwrap(((later["devices"] as? [[String: Any]])?.first?["queues"] as? [[String: Any]])?.first)
        let latency = try XCTUnwrap(queue["latency"] as? [String: Any], "\(queue)")
        XCTAssertEqual(latency["count"] as? Int, queue["requests"] as? Int)
        let p50 = try XCTUnwrap(latency["p50Nanoseconds"] as? Int)
        let p99 = try XCTUnwrap(latency["p99Nanoseconds"] as? Int)
        XCTAssertLessThanOrEqual(p50, p99)
        XCTAssertLessThanOrEqual(p99, try XCTUnwrap(latency["maxNanoseconds"] as? Int))
        let again = try hvctl(["pause", "--socket", socket])
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.stderr.contains("is paused (HTTP 409)"), again.stderr)

        // The metrics pass promtool's checks (format and naming conventions).
        let metrics = try hvctl(["metrics", "--socket", socket])
        XCTAssertEqual(metrics.status, 0, metrics.stderr)
        XCTAssertTrue(
            metrics.stdout.contains("sidecore_queue_requests_total{vm=\"vm0\",device=\"blk0\""), metrics.stdout)
        XCTAssertTrue(metrics.stdout.contains("sidecore_vm_paused{vm=\"vm0\"} 1"), metrics.stdout)
        XCTAssertTrue(
            metrics.stdout.contains(
                "sidecore_queue_request_duration_seconds_count{vm=\"vm0\",device=\"blk0\",type=\"virtio-blk\","
                    + "queue=\"request0\"} \(completed(later))"), metrics.stdout)
        XCTAssertTrue(metrics.stdout.contains("sidecore_kvm_vcpu_exits{vm=\"vm0\",vcpu=\"0\"}"), metrics.stdout)
        for queue in ["rx0", "tx0"] {
            XCTAssertTrue(
                metrics.stdout.contains(
                    "sidecore_queue_request_duration_seconds_count{vm=\"vm0\",device=\"net0\",type=\"virtio-net\","
                        + "queue=\"\(queue)\"} 0"), "the NIC's \(queue) latency histogram: \(metrics.stdout)")
        }
        let metricsFile = scratch.appendingPathComponent("metrics.txt")
        try Data(metrics.stdout.utf8).write(to: metricsFile)
        let check = try Toolchain.run("/bin/sh", ["-c", "promtool check metrics < '\(metricsFile.path)'"])
        XCTAssertEqual(check.status, 0, "promtool: \(check.stdout)\(check.stderr)")

        // Errors: status, stable code, the bad input named.
        let unknown = try curl(["/api/v1/nothing"])
        XCTAssertEqual(unknown.status, 404)
        XCTAssertEqual(try json(unknown.body)["code"] as? String, "not_found")
        let wrongMethod = try curl(["/api/v1/vm.info"], method: "DELETE")
        XCTAssertEqual(wrongMethod.status, 405)
        XCTAssertEqual(try json(wrongMethod.body)["code"] as? String, "method_not_allowed")
        let noVM = try curl(["/api/v1/vm.info?vm=other"])
        XCTAssertEqual(noVM.status, 404)
        XCTAssertTrue((try json(noVM.body)["message"] as? String ?? "").contains("vm=other"), noVM.body)
        let badBody = try curl(["/api/v1/vmm.side-cores"], method: "PUT", body: "{\"count\": \"two\"}")
        XCTAssertEqual(badBody.status, 400)
        XCTAssertEqual(try json(badBody.body)["code"] as? String, "bad_body")

        XCTAssertEqual(try hvctl(["resume", "--socket", socket]).status, 0)
        XCTAssertEqual(try json(try curl(["/api/v1/vm.info"]).body)["state"] as? String, "running")
        XCTAssertEqual(running.exitStatus(within: 60), 0, running.errors)
        XCTAssertTrue(running.output.contains("requests=\(requests)"), running.output)
        XCTAssertTrue(running.output.contains("errors=0"), running.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: socket), "the socket is removed at exit")
    }

    /// Also the log: with --log-file and -v, what ran and what the API changed are lines there,
    /// each with its time, level and VM, and nothing goes to stderr.
    func testShutdownEndsTheRunCleanly() throws {
        let statistics = scratch.appendingPathComponent("stats.json").path
        let logFile = scratch.appendingPathComponent("hvctl.log").path
        let running = try start(
            requests: 100_000_000, extra: ["--stats-json", statistics, "--log-file", logFile, "-v"])
        XCTAssertEqual(try hvctl(["pause", "--socket", socket]).status, 0)
        let shutdown = try hvctl(["shutdown", "--socket", socket])
        XCTAssertEqual(shutdown.status, 0, shutdown.stderr)
        XCTAssertEqual(running.exitStatus(within: 20), 0, "a requested shutdown is a clean exit: \(running.errors)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: socket))
        let document = try json(try String(contentsOfFile: statistics, encoding: .utf8))
        XCTAssertEqual(document["exit"] as? String, "shutdown")
        XCTAssertGreaterThan(document["timestamp"] as? Double ?? 0, 1.7e9, "--stats-json has its time (Unix seconds)")
        XCTAssertEqual(running.errors, "", "log lines go to the file")
        let lines = try String(contentsOfFile: logFile, encoding: .utf8).split(separator: "\n").map(String.init)
        for expected in [
            " info hvctl: api listening socket=\(socket)", " info hvctl: vm starting ",
            " notice hvctl: vm paused vm=vm0",
            " notice hvctl: vm shutdown requested vm=vm0", " info hvctl: vm ended exit=shutdown vm=vm0",
            // A device's own events name it and its VM.
            " info hvctl: device activated device=blk0 features=0x",
        ] {
            XCTAssertNotNil(
                lines.first { $0.contains(expected) }, "no '\(expected)' in:\n\(lines.joined(separator: "\n"))")
        }
        XCTAssertNotNil(lines.first { $0.contains("device activated") && $0.hasSuffix(" vm=vm0") }, "\(lines)")
        for line in lines {
            // 2026-12-05T06:40:01.123456Z: UTC with microseconds.
            XCTAssertEqual(line.split(separator: " ").first?.count, 27, line)
            XCTAssertTrue(line.split(separator: " ").first?.hasSuffix("Z") ?? false, line)
        }
        let gone = try hvctl(["info", "--socket", socket])
        XCTAssertNotEqual(gone.status, 0)
        XCTAssertTrue(gone.stderr.hasPrefix("hvctl: --socket \(socket): "), gone.stderr)
    }

    /// hvctl's own resident memory in KiB (every mapping but the guests' 256 MiB of RAM each) and
    /// its executable's text, from /proc/PID/smaps.
    func ownMemory(_ pid: Int32) throws -> (ownKiB: Int, textKiB: Int) {
        // cat, not String(contentsOfFile:): Foundation reads a /proc file only as far as its size, 0.
        let smaps = try Toolchain.run("/bin/cat", ["/proc/\(pid)/smaps"]).stdout
        // Mappings in order: a header line (`start-end perms ... [path]`), then `Size:`, `Rss:`, ...
        var ownKiB = 0
        var textKiB = 0
        var sizeKiB = 0
        var header = ""
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.first?.contains("-") == true, fields.count >= 5 {
                header = String(line)
            } else if fields.first == "Size:", fields.count >= 2 {
                sizeKiB = Int(fields[1]) ?? 0
            } else if fields.first == "Rss:", fields.count >= 2, sizeKiB != 256 * 1024 {  // not guest RAM
                let rss = Int(fields[1]) ?? 0
                ownKiB += rss
                if header.contains(" r-xp "), header.hasSuffix("/hvctl") { textKiB += rss }
            }
        }
        XCTAssertGreaterThan(textKiB, 0, "hvctl's text mapping was found")
        return (ownKiB, textKiB)
    }

    /// hvctl's own resident memory (all of it but the guest's RAM) with the API serving and metrics
    /// scraped stays within issue 15's budget of 8 MiB: 6.9-7.1 MiB measured (2026-12-06), 10.2-10.6
    /// before the link laid out the code that runs after start-up together (linker/). The
    /// executable's own text is most of it and the test prints it: when it grows, `make
    /// hot-text-order`. A second VM (`--config`) costs at most 1 MiB more; the socket is gone
    /// after SIGTERM.
    func testHvctlsOwnMemoryWithTheAPIAndMetricsStaysWithinItsBudget() throws {
        let running = try start(requests: 100_000_000)
        XCTAssertEqual(try curl(["/metrics"]).status, 200)
        XCTAssertEqual(try curl(["/api/v1/vm.counters"]).status, 200)
        let one = try ownMemory(running.process.processIdentifier)
        print("hvctl own RSS with one VM: \(one.ownKiB) KiB, text \(one.textKiB) KiB")
        XCTAssertLessThanOrEqual(one.ownKiB, 8 * 1024, "hvctl's own RSS in KiB (its text: \(one.textKiB) KiB)")
        kill(running.process.processIdentifier, SIGTERM)
        XCTAssertNotNil(running.exitStatus(within: 20))
        XCTAssertFalse(FileManager.default.fileExists(atPath: socket), "the socket is removed after SIGTERM")

        let pair = try startPair(requests: 100_000_000)
        XCTAssertEqual(try curl(["/metrics"]).status, 200)
        XCTAssertEqual(try curl(["/api/v1/vm.counters"]).status, 200)
        let two = try ownMemory(pair.process.processIdentifier)
        print("hvctl own RSS with two VMs: \(two.ownKiB) KiB, text \(two.textKiB) KiB")
        XCTAssertLessThanOrEqual(two.ownKiB - one.ownKiB, 1024, "the second VM's cost in KiB beyond its RAM")
        kill(pair.process.processIdentifier, SIGTERM)
        XCTAssertNotNil(pair.exitStatus(within: 20))
    }

    /// Two iobench VMs, a and b, from --config (each reading `requests` blocks of the shared disk),
    /// with the API on `socket`; returns once it answers.
    func startPair(requests: Int, extra: [String] = []) throws -> Running {
        let vm = { (name: String) in
            "{\"name\": \"\(name)\", \"kernel\": \"\(Toolchain.iobenchGuest)\", \"memory\": 256, "
                + "\"cmdline\": \"qd=4 requests=\(requests) hold_ms=20\", \"disks\": [\"path=\(self.disk!),readonly=on\"]}"
        }
        let config = scratch.appendingPathComponent("pair.json")
        try Data("{\"vms\": [\(vm("a")), \(vm("b"))]}".utf8).write(to: config)
        let running = try Running(["--config", config.path, "--api-socket", socket] + extra, in: scratch)
        XCTAssertTrue(
            eventually(seconds: 20) { (try? self.curl(["/api/v1/vmm.ping"]))?.status == 200 },
            "the API answers: \(running.errors)")
        return running
    }

    /// A raw client (python3's socket) as a process: sends `request`, then reads what the server
    /// answers until it closes or `seconds` pass, and prints the seconds it took and the answer's
    /// first line into `output`.
    func rawClient(_ request: String, output: URL, seconds: Double = 15) throws -> Process {
        let script = """
            import socket, sys, time
            s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(float(sys.argv[3]))
            start = time.monotonic(); s.sendall(bytes.fromhex(sys.argv[2])); data = b''
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk: break
                    data += chunk
            except socket.timeout:
                pass
            print(round(time.monotonic() - start, 3)); print(data.split(b'\\r\\n')[0].decode())
            """
        let hex = Array(request.utf8).map { String(format: "%02x", $0) }.joined()
        FileManager.default.createFile(atPath: output.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", script, socket, hex, "\(seconds)"]
        process.standardOutput = try FileHandle(forWritingTo: output)
        try process.run()
        return process
    }

    /// What a raw client printed, once it ended: the answer's first line and the seconds it took.
    func rawAnswer(_ process: Process, output: URL) throws -> (statusLine: String, seconds: Double) {
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        let lines = try String(contentsOf: output, encoding: .utf8).split(separator: "\n").map(String.init)
        return (lines.count > 1 ? lines[1] : "", Double(lines.first ?? "") ?? 0)
    }

    /// With --config, VMs are addressed by name (`?vm=`, `--vm`) and a request that must name one
    /// and does not is refused; clients that misbehave against the live hvctl (a slow one, malformed
    /// requests, many at once) get their errors while the others are answered and the VMs run on.
    func testSeveralVMsByNameAndMisbehavingClients() throws {
        let running = try startPair(requests: 100_000_000, extra: ["--side-cores-max", "2"])
        XCTAssertEqual(try json(try curl(["/api/v1/vmm.ping"]).body)["vms"] as? [String], ["a", "b"])
        // Side cores resized over the API while both VMs' queues run: the second core takes one.
        let grown = try curl(["/api/v1/vmm.side-cores"], method: "PUT", body: "{\"count\": 2}")
        XCTAssertEqual(grown.status, 200, grown.body)
        XCTAssertEqual(try json(grown.body)["sideCores"] as? Int, 2)
        XCTAssertGreaterThan(try json(grown.body)["moved"] as? Int ?? 0, 0, "a queue moved to the new core")
        let active = ((try json(try curl(["/api/v1/vm.counters"]).body)["sideCores"] as? [[String: Any]]) ?? [])
            .filter { $0["active"] as? Bool == true }
        XCTAssertEqual(active.count, 2)
        XCTAssertEqual(try hvctl(["iocm", "--socket", socket, "--side-cores", "1"]).status, 0)
        let unnamed = try curl(["/api/v1/vm.info"])
        XCTAssertEqual(unnamed.status, 400)
        XCTAssertEqual(try json(unnamed.body)["code"] as? String, "vm_required")
        XCTAssertEqual(try json(try curl(["/api/v1/vm.info?vm=b"]).body)["name"] as? String, "b")
        XCTAssertEqual(try hvctl(["pause", "--socket", socket, "--vm", "b"]).status, 0)
        XCTAssertEqual(try json(try curl(["/api/v1/vm.info?vm=b"]).body)["state"] as? String, "paused")
        XCTAssertEqual(try json(try curl(["/api/v1/vm.info?vm=a"]).body)["state"] as? String, "running")
        let metrics = try curl(["/metrics"]).body
        XCTAssertTrue(metrics.contains("sidecore_vm_paused{vm=\"b\"} 1"), metrics)
        XCTAssertTrue(metrics.contains("sidecore_vm_paused{vm=\"a\"} 0"), metrics)
        XCTAssertEqual(try hvctl(["resume", "--socket", socket, "--vm", "b"]).status, 0)

        // A slow client: half a request, then nothing. Others are answered meanwhile; it gets 408
        // once the 5 s a request may take have passed (well before its own 15 s).
        let slowOutput = scratch.appendingPathComponent("slow.txt")
        let slow = try rawClient("GET /api/v1/vmm.ping HTTP/1.1\r\nHost: x\r\n", output: slowOutput)
        // Many at once: eight curls started together all get their answer.
        let curls = try (0..<8).map { index -> Process in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
            process.arguments = [
                "-sf", "-o", "/dev/null", "--max-time", "10", "--unix-socket", socket,
                "http://localhost" + (index % 2 == 0 ? "/metrics" : "/api/v1/vm.counters"),
            ]
            try process.run()
            return process
        }
        for process in curls {
            process.waitUntilExit()
            XCTAssertEqual(process.terminationStatus, 0, "a concurrent curl was answered")
        }
        let slowResult = try rawAnswer(slow, output: slowOutput)
        XCTAssertTrue(slowResult.statusLine.hasPrefix("HTTP/1.1 408 "), "\(slowResult)")
        XCTAssertLessThan(slowResult.seconds, 15, "dropped by the server, not by its own timeout")

        // Malformed requests: each its status, and the connection closed.
        for (request, status) in [
            ("NONSENSE\r\n\r\n", 400), ("GET /metrics HTTP/1.1\nHost: x\n\n", 400),
            ("GET /metrics HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
            ("GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 9000) + "\r\n\r\n", 431),
            ("GET /metrics HTTP/2.0\r\n\r\n", 505),
            ("POST /api/v1/vm.pause?vm=a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        ] {
            let output = scratch.appendingPathComponent("raw.txt")
            let answer = try rawAnswer(try rawClient(request, output: output), output: output)
            XCTAssertTrue(answer.statusLine.hasPrefix("HTTP/1.1 \(status) "), "\(request.prefix(40)): \(answer)")
            XCTAssertLessThan(answer.seconds, 15, "closed by the server: \(request.prefix(40))")
        }
        XCTAssertTrue(running.process.isRunning, "hvctl runs on")
        XCTAssertEqual(try json(try curl(["/api/v1/vm.info?vm=a"]).body)["state"] as? String, "running")
        XCTAssertEqual(try curl(["/api/v1/vm.shutdown?vm=a"], method: "PUT").status, 204)
        XCTAssertEqual(try curl(["/api/v1/vm.shutdown?vm=b"], method: "PUT").status, 204)
        XCTAssertNotNil(running.exitStatus(within: 30), running.errors)
        XCTAssertFalse(FileManager.default.fileExists(atPath: socket), "the socket is removed at exit")
    }

    /// iobench has no ACPI, so it ignores the power button: a graceful shutdown ends with the hard
    /// stop at its deadline, not before, and says so. (A Linux guest that powers off on the button
    /// is NestedBootTests' power-button section.)
    func testAGracefulShutdownTheGuestIgnoresEndsHardAtItsDeadline() throws {
        let statistics = scratch.appendingPathComponent("stats.json").path
        let logFile = scratch.appendingPathComponent("hvctl.log").path
        let running = try start(requests: 100_000_000, extra: ["--stats-json", statistics, "--log-file", logFile])
        let button = try hvctl(["power-button", "--socket", socket])
        XCTAssertEqual(button.status, 0, button.stderr)

        // Refused: a paused guest cannot answer the button; bad bodies name their field.
        XCTAssertEqual(try hvctl(["pause", "--socket", socket]).status, 0)
        let whilePaused = try hvctl(["shutdown", "--socket", socket, "--graceful"])
        XCTAssertEqual(whilePaused.stderr, "hvctl: --socket \(socket): vm vm0 is paused: resume it first (HTTP 409)\n")
        XCTAssertEqual(try curl(["/api/v1/vm.power-button"], method: "PUT").status, 409)
        XCTAssertEqual(try hvctl(["resume", "--socket", socket]).status, 0)
        let noGraceful = try hvctl(["shutdown", "--socket", socket, "--timeout", "5"])
        XCTAssertNotEqual(noGraceful.status, 0)
        XCTAssertTrue(noGraceful.stderr.contains("--timeout 5: only with --graceful"), noGraceful.stderr)
        let zero = try curl(["/api/v1/vm.shutdown"], method: "PUT", body: "{\"graceful\": true, \"timeoutSeconds\": 0}")
        XCTAssertEqual(zero.status, 400)
        XCTAssertTrue((try json(zero.body)["message"] as? String ?? "").hasPrefix("timeoutSeconds: 0 "), zero.body)
        XCTAssertTrue(running.process.isRunning, "refused requests change nothing")

        let requested = Date()
        let graceful = try curl(
            ["/api/v1/vm.shutdown"], method: "PUT", body: "{\"graceful\": true, \"timeoutSeconds\": 2}")
        XCTAssertEqual(graceful.status, 202, graceful.body)
        XCTAssertEqual(try json(graceful.body)["timeoutSeconds"] as? Int, 2)
        XCTAssertEqual(running.exitStatus(within: 30), 0, running.errors)
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(requested), 2, "the guest had its 2 s")
        let document = try json(try String(contentsOfFile: statistics, encoding: .utf8))
        XCTAssertEqual(document["exit"] as? String, "shutdown", "ended by the deadline's hard stop")
        let log = try String(contentsOfFile: logFile, encoding: .utf8)
        for expected in [
            " notice hvctl: vm power button pressed vm=vm0",
            " notice hvctl: vm graceful shutdown requested timeout=2s vm=vm0",
            " notice hvctl: vm did not power off in time: stopped timeout=2s vm=vm0",
        ] {
            XCTAssertTrue(log.contains(expected), "no '\(expected)' in:\n\(log)")
        }
    }

    func testAStaleSocketIsReplacedAndALiveOneRefusedNamingItsHolder() throws {
        let first = try start(requests: 100_000_000)
        let refused = try hvctl(["run", "--kernel", Toolchain.iobenchGuest, "--api-socket", socket])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertEqual(
            refused.stderr,
            "hvctl: --api-socket \(socket): in use by process \(first.process.processIdentifier), "
                + "which is listening on it\n")
        kill(first.process.processIdentifier, SIGKILL)
        XCTAssertNotNil(first.exitStatus(within: 10))
        XCTAssertTrue(FileManager.default.fileExists(atPath: socket), "a killed hvctl leaves its socket")
        let second = try start(requests: 100_000_000)
        XCTAssertEqual(try json(try curl(["/api/v1/vmm.ping"]).body)["pid"] as? Int32, second.process.processIdentifier)
        XCTAssertEqual(try hvctl(["shutdown", "--socket", socket]).status, 0)
        XCTAssertEqual(second.exitStatus(within: 20), 0, second.errors)
    }

    /// The document is valid OpenAPI, and schemathesis, generating requests from it (through a
    /// loopback TCP bridge: it speaks TCP only), finds no server error and no reply outside it.
    func testTheOpenAPIDocumentIsValidAndTheServerKeepsToIt() throws {
        let document = Toolchain.repository.appendingPathComponent("docs/api.yaml").path
        let validation = try Toolchain.run("/bin/sh", ["-c", "python3 -m openapi_spec_validator '\(document)'"])
        XCTAssertEqual(validation.status, 0, validation.stdout + validation.stderr)

        let running = try start(requests: 100_000_000, extra: ["--side-cores-max", "2"])
        let port = 20000 + Int(getpid() % 20000)
        let bridge = Process()
        bridge.executableURL = URL(fileURLWithPath: "/usr/bin/socat")
        bridge.arguments = ["TCP-LISTEN:\(port),bind=127.0.0.1,fork,reuseaddr", "UNIX-CONNECT:\(socket)"]
        try bridge.run()
        defer {
            bridge.terminate()
            bridge.waitUntilExit()
        }
        // Shutdown would end the run under the other operations; testShutdownEndsTheRunCleanly and
        // testAGracefulShutdownTheGuestIgnoresEndsHardAtItsDeadline have it. The power button is
        // fuzzed: iobench ignores it.
        let result = try Toolchain.run(
            "/bin/sh",
            [
                "-c",
                "schemathesis run '\(document)' --url http://127.0.0.1:\(port) --exclude-path /api/v1/vm.shutdown "
                    + "--checks all --max-examples 40 --workers 1 --wait-for-schema 10 --no-color 2>&1",
            ])
        XCTAssertEqual(result.status, 0, result.stdout)
        XCTAssertTrue(running.process.isRunning, "hvctl is alive after the run: \(running.errors)")
        XCTAssertEqual(try curl(["/api/v1/vmm.ping"]).status, 200)
        XCTAssertEqual(try hvctl(["shutdown", "--socket", socket]).status, 0)
        XCTAssertEqual(running.exitStatus(within: 20), 0, running.errors)
    }
}
