import FoundationEssentials
import CKVM
import Glibc
import Hypervisor
import VirtioDevices

/// `--peer qemu`: QEMU 7.2 (Debian's) running the same iobench guest on the same file, the disk
/// on an iothread with `aio=io_uring` and its adaptive polling (`poll-max-ns`, QEMU's default
/// unless given). KVM's exits per request come from QEMU's monitor (BenchQMP), read while the
/// guest holds at its start and end marks, where QEMU's threads are also pinned as hvctl's are
/// (`placement`). `-arch-capabilities`: QEMU 7.2 cannot set that MSR on this host's KVM (PVM) and
/// stops; nothing on the I/O path reads it.
enum BenchQEMURun {
    static let executable = "/usr/bin/qemu-system-x86_64"

    /// How long the guest waits at each mark: time for the monitor's round trip.
    static let holdMilliseconds = 100
    /// With a network workload: room for the TAP's host end to be set up before the first request.
    static let networkHoldMilliseconds = 500
    /// With redirect: its two vCPUs and the iothread may keep the monitor's thread waiting for a CPU.
    static let redirectHoldMilliseconds = 1500

    /// hvctl's placement in poll mode for `vms` one-vCPU VMs on `sideCores` side cores (side cores
    /// on the last CPUs, vCPUs on the others): VM i's I/O thread takes side core i's CPU (modulo
    /// the count, so several VMs share a core as hvctl's do) and the vCPU threads the vCPUs', so
    /// both peers run on the same cores. QEMU's other threads (main loop, RCU) stay where the
    /// kernel puts them.
    static func placement(sideCores: Int, vms: Int) -> CPUPlacement {
        CPUPlacement(sideCores: BenchHvctlRun.sideCores(hybrid: false, count: sideCores), vcpuCount: vms)
    }

    static var isInstalled: Bool { access(executable, X_OK) == 0 }

    /// QEMU's version line, for the environment record.
    static func version() -> String? {
        guard isInstalled, let output = try? BenchProcess.run(executable, ["--version"]) else { return nil }
        return output.split(whereSeparator: \.isNewline).first.map(String.init)
    }

    /// One QEMU process: VM `index` of `vms`, its I/O thread on side core `index % sideCores`'s CPU.
    static func measure(
        guest: String, disk: BenchDisk, load: BenchLoad, pollMaxNanoseconds: UInt64?, index: Int = 0,
        vms: Int = 1, sideCores: Int = 1, running: Lock<Set<Int32>>, interrupted: Lock<Int32?>
    ) throws -> BenchMeasurement {
        let tap = BenchTAP.name(for: "q")
        let device =
            load.workload.isNetwork
            ? netArguments(tap: tap)
            : diskArguments(disk, readOnly: load.workload.writePercent == 0, pollMaxNanoseconds: pollMaxNanoseconds)
        // With a network, the host end is being set up meanwhile: a longer first hold leaves room.
        let hold =
            load.workload.isNetwork
            ? networkHoldMilliseconds : load.workload == .redirect ? redirectHoldMilliseconds : holdMilliseconds
        let machine =
            [
                "-smp", "\(load.workload.vcpus)", "-m", "256", "-kernel", guest, "-append",
                load.guestCommandLine(holdMilliseconds: hold, verify: disk.hasPattern),
            ] + device
        let (output, samples) = try run(
            machine: machine, tap: load.workload.isNetwork ? tap : nil, placement: (index, vms, sideCores),
            running: running, interrupted: interrupted
        ) { $0.hasSuffix("iobench: start") || $0.hasSuffix("iobench: end") }
        if let error = output.split(whereSeparator: \.isNewline).first(where: { $0.contains("iobench: error") }) {
            throw BenchError("the iobench guest failed under QEMU: \(error)")
        }
        guard let result = IOBenchResult(lines: output.split(whereSeparator: \.isNewline).map(String.init)) else {
            throw BenchError("QEMU ended without the guest's result: \(output.suffix(300))")
        }
        guard samples.count == 2 else { throw BenchError("QEMU's guest did not pass both marks") }
        var measurement = result.measurement
        let requests = Double(max(measurement.requests, 1))
        measurement.exitsPerRequest = Double(samples[1].exits &- samples[0].exits) / requests
        if samples[0].haltWakeups.count > 1, samples[1].haltWakeups.count > 1 {
            measurement.redirect?.secondVCPUWakeupsPerRequest =
                Double(samples[1].haltWakeups[1] &- samples[0].haltWakeups[1]) / requests
        }
        return measurement
    }

    /// Runs QEMU to its end with `machine` (memory, kernel, command line, devices) and what every
    /// bench VM has (KVM, the console on stdio, a QMP socket); returns its output and KVM's
    /// statistics of its vCPUs at each console line `isMark` accepts. The monitor is connected at the first
    /// mark (QEMU listens long before), where QEMU's threads are pinned as hvctl's are (VM `index`
    /// of `vms`, its I/O thread on side core `index % sideCores`'s CPU). With `tap`, the TAP's host
    /// end is set up as soon as QEMU has made it, on a thread of its own, while the console is read
    /// (with the guest's neighbour entry unless `guestSpeaksARP`).
    /// `onLine` sees every line as it comes.
    static func run(
        machine: [String], tap: String?, guestSpeaksARP: Bool = false,
        placement slot: (index: Int, vms: Int, sideCores: Int),
        running: Lock<Set<Int32>>, interrupted: Lock<Int32?>, onLine: ((String) -> Void)? = nil,
        isMark: @escaping (String) -> Bool
    ) throws -> (output: String, samples: [BenchQMP.Sample]) {
        var template = Array("/tmp/hvctl-bench-qmp-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw BenchError("a directory for QEMU's QMP socket: \(String(cString: strerror(errno)))")
        }
        let directory = String(cString: made)
        let socket = directory + "/qmp.sock"
        defer {
            unlink(socket)
            rmdir(directory)
        }
        let arguments =
            [
                "-enable-kvm", "-cpu", "host,-arch-capabilities", "-display", "none", "-no-reboot", "-nodefaults",
                "-name", "bench\(slot.index),debug-threads=on", "-serial", "stdio", "-qmp",
                "unix:\(socket),server=on,wait=off",
            ] + machine
        var monitor: BenchQMP?
        var samples: [BenchQMP.Sample] = []
        var monitorError: Error?
        let tapSetup = Lock<Result<Void, any Error>?>(nil)
        let tapThread = try tap.map { tap in
            try HostThread(name: "bench-tap") {
                let result = Result { try BenchTAP.configure(tap, guestSpeaksARP: guestSpeaksARP) }
                tapSetup.withLock { $0 = result }
                // The run cannot measure without the host end: QEMU goes now, not after every load.
                if case .failure = result { for pid in running.withLock({ $0 }) { kill(pid, SIGKILL) } }
            }
        }
        let output: String
        do {
            output = try BenchProcess.run(executable, arguments, running: running, interrupted: interrupted) { line in
                onLine?(line)
                guard monitorError == nil, isMark(line) else { return }
                do {
                    let connected = try monitor ?? BenchQMP(socket: socket)
                    if monitor == nil {
                        try pin(
                            try connected.threadIDs(),
                            placement: placement(sideCores: slot.sideCores, vms: slot.vms), index: slot.index)
                    }
                    monitor = connected
                    samples.append(try connected.sample())
                } catch {
                    monitorError = error
                }
            }
        } catch {
            tapThread?.join()
            throw error
        }
        monitor = nil
        tapThread?.join()
        if case .failure(let error) = tapSetup.withLock({ $0 }) { throw error }
        if let monitorError { throw monitorError }
        return (output, samples)
    }

    /// A virtio-net NIC on `tap` with the bench guest's MAC. QEMU 7.2 has no iothread for
    /// virtio-net: its main loop serves the TAP.
    static func netArguments(tap: String) -> [String] {
        [
            "-netdev", "tap,id=n0,ifname=\(tap),script=no,downscript=no", "-device",
            "virtio-net-pci,netdev=n0,mac=\(BenchTAP.guestMAC),romfile=",
        ]
    }

    /// A virtio-blk disk on an iothread with `aio=io_uring`, at its default polling limit or the one given.
    static func diskArguments(_ disk: BenchDisk, readOnly: Bool, pollMaxNanoseconds: UInt64?) -> [String] {
        let drive: String
        switch disk {
        case .file(let path, _):
            drive = "file=\(path),if=none,id=d0,format=raw,aio=io_uring\(readOnly ? ",readonly=on" : "")"
        case .null(let bytes): drive = "file=null-co://,size=\(bytes),if=none,id=d0,format=raw"
        }
        let iothread = "iothread,id=io0" + (pollMaxNanoseconds.map { ",poll-max-ns=\($0)" } ?? "")
        return ["-object", iothread, "-drive", drive, "-device", "virtio-blk-pci,drive=d0,iothread=io0"]
    }

    /// Pins QEMU's vCPU threads where `placement` puts vCPUs and its iothreads on VM `index`'s side core's CPU.
    static func pin(_ threads: (vcpus: [Int32], iothreads: [Int32]), placement: CPUPlacement, index: Int) throws {
        func restrict(_ tid: Int32, to cpus: [Int32]) throws {
            let list = cpus.map { CInt($0) }
            guard ckvm_set_task_cpus(tid, list, CInt(list.count)) == 0 else {
                throw BenchError("pinning QEMU's thread \(tid) to CPUs \(cpus): \(String(cString: strerror(errno)))")
            }
        }
        if let cpus = placement.vcpuCPUs {
            for tid in threads.vcpus { try restrict(tid, to: cpus) }
        }
        let sideCore =
            placement.sideCoreCPUs.isEmpty ? nil : placement.sideCoreCPUs[index % placement.sideCoreCPUs.count]
        if let cpu = sideCore {
            for tid in threads.iothreads { try restrict(tid, to: [cpu]) }
        }
    }
}
