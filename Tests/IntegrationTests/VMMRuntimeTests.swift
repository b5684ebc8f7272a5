import Foundation
import Hypervisor
import Synchronization
import TestSupport
import VirtioDevices
import VMM
import XCTest

/// The VMM runtime without the command line: the iobench guest (guest-images/iobench, native
/// speed on this host's /dev/kvm) built, run, stopped and taken down through `VMMRuntime`.
final class VMMRuntimeTests: IOBenchDiskTestCase {
    func vm(_ name: String = "vm0", cmdline: String, cpus: Int = 1) -> VMConfiguration {
        let machine = MachineConfiguration(
            boot: LinuxBootConfiguration(kernelPath: Toolchain.iobenchGuest, commandLine: cmdline + " hold_ms=20"),
            vcpuCount: cpus, memoryInBytes: 256 << 20)
        // Read-only: iobench only reads, and VMs sharing one image may only share it for reading.
        var disk = BlockDeviceConfiguration(path: disk, id: "")
        disk.readOnly = true
        return VMConfiguration(name: name, machine: machine, disks: [disk])
    }

    func sideCores(_ mode: PollSchedule.Mode) -> IOConfiguration {
        var configuration = SideCoreConfiguration(mode: mode, count: 1, pollMaxNanoseconds: 256_000)
        configuration.placement = .unpinned
        return IOConfiguration(engine: .sideCores(configuration))
    }

    /// A runtime whose VMs' consoles are collected in `consoles`, by VM name.
    func runtime(_ vms: [VMConfiguration], io: IOConfiguration, consoles: Lock<[String: [UInt8]]>) throws -> VMMRuntime
    {
        try VMMRuntime(vms: vms, io: io, kvm: try KVM(), namedVMs: vms.count > 1) { vm in
            let name = vm.name
            return { byte in consoles.withLock { $0[name, default: []].append(byte) } }
        }
    }

    func requests(_ report: StatisticsReport, vm: Int = 0) -> UInt64 {
        report.vms[vm].devices.flatMap(\.queues).reduce(0) { $0 + $1.requests }
    }

    func testNotifyThreadsServeTheDiskAndTheGuestPowersOff() throws {
        let consoles = Lock<[String: [UInt8]]>([:])
        let runtime = try runtime(
            [vm(cmdline: "qd=4 requests=2000")], io: IOConfiguration(engine: .notify), consoles: consoles)
        XCTAssertNil(runtime.sideCores)
        XCTAssertEqual(runtime.placement, CPUPlacement(sideCores: nil, vcpuCount: 1))
        let exits = try runtime.run()
        let report = try runtime.finish(exits: exits)
        XCTAssertEqual(exits, [.powerOff])
        let console = String(decoding: consoles.withLock { $0["vm0"] ?? [] }, as: UTF8.self)
        XCTAssertTrue(console.contains("iobench: result"), console)
        XCTAssertTrue(console.contains("errors=0"), console)
        XCTAssertGreaterThanOrEqual(requests(report), 2000, "every request went through the device")
        XCTAssertEqual(report.ioMode, "notify")
        XCTAssertTrue(report.singleVMAtTopLevel)
        XCTAssertEqual(report.vms[0].exit, "poweroff")
    }

    func testTwoVMsShareOneSideCoreAndNameTheirDevices() throws {
        let consoles = Lock<[String: [UInt8]]>([:])
        let runtime = try runtime(
            [vm("a", cmdline: "qd=1 requests=500"), vm("b", cmdline: "qd=8 requests=3000")],
            io: sideCores(.hybrid), consoles: consoles)
        XCTAssertEqual(runtime.placement.sideCoreCPUs, [nil], "one unpinned side core")
        let exits = try runtime.run()
        let report = try runtime.finish(exits: exits)
        XCTAssertEqual(exits, [.powerOff, .powerOff])
        XCTAssertFalse(report.singleVMAtTopLevel)
        XCTAssertEqual(report.vms.map(\.name), ["a", "b"])
        XCTAssertEqual(report.vms.map { $0.devices.map(\.name) }, [["a.blk0"], ["b.blk0"]])
        XCTAssertGreaterThanOrEqual(requests(report, vm: 0), 500)
        XCTAssertGreaterThanOrEqual(requests(report, vm: 1), 3000)
        XCTAssertEqual(report.sideCores.count, 1)
        XCTAssertEqual(Set(report.sideCores[0].handlers.map(\.name)).count, 2, "both VMs' queues were on side0")
        for name in ["a", "b"] {
            let console = String(decoding: consoles.withLock { $0[name] ?? [] }, as: UTF8.self)
            XCTAssertTrue(console.contains("iobench: result") && console.contains("errors=0"), "\(name): \(console)")
        }
    }

    /// A stop while the guest works ends its run with the stop's exit, and the runtime still
    /// takes everything down: live statistics, then final ones with nothing lost.
    func testStopEndsARunningVMAndFinishTakesItDown() throws {
        let consoles = Lock<[String: [UInt8]]>([:])
        let runtime = try runtime([vm(cmdline: "qd=1 requests=100000000")], io: sideCores(.poll), consoles: consoles)
        let exits = Lock<[MachineExit]?>(nil)
        let runner = Thread { exits.withLock { $0 = try? runtime.run() } }
        runner.start()
        XCTAssertTrue(
            eventually(seconds: 30) { (try? runtime.statistics()).map { self.requests($0) > 100 } ?? false },
            "the guest was reading its disk")
        XCTAssertEqual(try runtime.statistics().vms[0].exit, "running")
        runtime.stop(.stopped(signal: SIGTERM))
        XCTAssertTrue(eventually(seconds: 10) { exits.withLock { $0 != nil } }, "run returned after the stop")
        let ended = try XCTUnwrap(exits.withLock { $0 })
        XCTAssertEqual(ended, [.stopped(signal: SIGTERM)])
        let report = try runtime.finish(exits: ended)
        XCTAssertEqual(report.vms[0].exit, "signal 15")
        XCTAssertGreaterThan(requests(report), 100)
        XCTAssertEqual(report.vms[0].devices[0].deviceErrors, 0)
    }

    func testAVMThatCannotBeBuiltIsNamedWithItsStage() throws {
        var bad = vm("small", cmdline: "")
        bad.machine.memoryInBytes = 4096
        XCTAssertThrowsError(
            try runtime(
                [vm("good", cmdline: ""), bad], io: IOConfiguration(engine: .notify),
                consoles: Lock([:]))
        ) { error in
            let build = error as? VMBuildError
            XCTAssertEqual(build?.vm, "small")
            XCTAssertEqual(build?.stage, .machine)
            XCTAssertEqual((build?.underlying as? ConfigurationError)?.field, .memoryInBytes)
        }
    }

    /// Names of this process's threads.
    func threadNames() -> [String] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.compactMap { try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8) }
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    /// A run that cannot be built leaves no side-core thread polling behind it.
    func testAFailedBuildStopsTheSideCoresItStarted() throws {
        XCTAssertTrue(eventually { !self.threadNames().contains("side0") }, "no side core before: \(threadNames())")
        var bad = vm("small", cmdline: "")
        bad.machine.memoryInBytes = 4096
        XCTAssertThrowsError(try runtime([vm("good", cmdline: ""), bad], io: sideCores(.poll), consoles: Lock([:])))
        XCTAssertTrue(eventually { !self.threadNames().contains("side0") }, "side0 still runs: \(threadNames())")
    }

    /// One API request, and its JSON reply (an object).
    func ask(_ path: String, _ method: String, _ target: String, body: String = "") throws -> [String: Any] {
        let reply = try APIClient.request(method, target, body: Array(body.utf8), socket: path)
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(reply.body)) as? [String: Any], reply.text)
    }

    /// The API answers from the runtime while the guest runs: live statistics with a timestamp,
    /// and a side-core count change that moves the queue to a notify thread; the socket file goes at stop.
    func testTheAPIReportsAndResizesARunningRuntime() throws {
        let runtime = try runtime([vm(cmdline: "qd=1 requests=100000000")], io: sideCores(.poll), consoles: Lock([:]))
        let path = scratch.appendingPathComponent("api.sock").path
        let api = VMMAPI(runtime: runtime, version: "test")
        let server = try APIServer(path: path, respond: api.respond(to:))
        let exits = Lock<[MachineExit]?>(nil)
        let runner = Thread { exits.withLock { $0 = try? runtime.run() } }
        runner.start()
        defer {
            runtime.stop(.stopped(signal: SIGTERM))
            _ = eventually(seconds: 10) { exits.withLock { $0 != nil } }
            if let ended = exits.withLock({ $0 }) { _ = try? runtime.finish(exits: ended) }
        }
        XCTAssertTrue(eventually(seconds: 30) { (try? runtime.statistics()).map { self.requests($0) > 100 } ?? false })
        let stats = try ask(path, "GET", "/api/v1/vm.counters")
        XCTAssertEqual(stats["exit"] as? String, "running")
        XCTAssertEqual((stats["sideCores"] as? [[String: Any]])?.count, 1)
        let timestamp = try XCTUnwrap(stats["timestamp"] as? Double)
        XCTAssertEqual(timestamp, Date().timeIntervalSince1970, accuracy: 60)
        XCTAssertGreaterThan(try XCTUnwrap(stats["uptimeSeconds"] as? Double), 0)
        let resized = try ask(path, "PUT", "/api/v1/vmm.side-cores", body: #"{"count":0}"#)
        XCTAssertEqual(resized["sideCores"] as? Int, 0)
        XCTAssertEqual(resized["moved"] as? Int, 1, "the disk's one queue moved to a notify thread")
        XCTAssertEqual(runtime.sideCores?.activeCount, 0)
        XCTAssertThrowsError(
            try APIClient.request("PUT", "/api/v1/vmm.side-cores", body: Array("{}".utf8), socket: path))
        XCTAssertThrowsError(try APIClient.request("GET", "/api/v1/nonsense", socket: path))
        server.stop()
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "the socket file is removed")
    }

    /// Pause stops the vCPUs and the queue (no request completes, no vCPU exits); resume goes on
    /// where it stopped, and the guest finishes its run with every block it read verified.
    func testPauseStopsTheVMAndResumeGoesOnWithNothingLost() throws {
        for mode in [PollSchedule.Mode.poll, .hybrid] {
            let consoles = Lock<[String: [UInt8]]>([:])
            let runtime = try runtime([vm(cmdline: "qd=4 requests=60000")], io: sideCores(mode), consoles: consoles)
            let exits = Lock<[MachineExit]?>(nil)
            let runner = Thread { exits.withLock { $0 = try? runtime.run() } }
            runner.start()
            let vm = runtime.vms[0]
            XCTAssertTrue(
                eventually(seconds: 30) { (try? runtime.statistics()).map { self.requests($0) > 100 } ?? false })
            XCTAssertTrue(vm.pause(), "\(mode): every vCPU stopped")
            XCTAssertTrue(vm.isPaused)
            let before = try runtime.statistics()
            let exitsBefore = try vm.machine.vcpuStatistics().map { $0["exits"] ?? 0 }
            // Nothing may move while paused: look again after a while.
            usleep(300_000)
            XCTAssertEqual(
                requests(try runtime.statistics()), requests(before), "\(mode): no request completed while paused")
            XCTAssertEqual(
                try vm.machine.vcpuStatistics().map { $0["exits"] ?? 0 }, exitsBefore, "\(mode): no vCPU ran")
            XCTAssertLessThan(requests(before), 60_000, "\(mode): paused before the guest finished")
            vm.resume()
            XCTAssertFalse(vm.isPaused)
            XCTAssertTrue(eventually(seconds: 60) { exits.withLock { $0 != nil } }, "\(mode): the guest finished")
            let ended = try XCTUnwrap(exits.withLock { $0 })
            let report = try runtime.finish(exits: ended)
            XCTAssertEqual(ended, [.powerOff])
            let console = String(decoding: consoles.withLock { $0["vm0"] ?? [] }, as: UTF8.self)
            XCTAssertTrue(console.contains("errors=0"), "\(mode): every block verified: \(console)")
            XCTAssertGreaterThanOrEqual(requests(report), 60_000, "\(mode)")
        }
    }
}
