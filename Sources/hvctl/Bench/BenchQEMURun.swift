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
        let device: [String]
        let tap = BenchTAP.name(for: "q")
        if load.workload.isNetwork {
            // QEMU 7.2 has no iothread for virtio-net: its main loop serves the TAP.
            device = [
                "-netdev", "tap,id=n0,ifname=\(tap),script=no,downscript=no", "-device",
                "virtio-net-pci,netdev=n0,mac=\(BenchTAP.guestMAC),romfile=",
            ]
        } else {
            let drive: String
            switch disk {
            case .file(let path, _):
                let access = load.workload.writePercent == 0 ? ",readonly=on" : ""
                drive = "file=\(path),if=none,id=d0,format=raw,aio=io_uring\(access)"
            case .null(let bytes): drive = "file=null-co://,size=\(bytes),if=none,id=d0,format=raw"
            }
            let iothread = "iothread,id=io0" + (pollMaxNanoseconds.map { ",poll-max-ns=\($0)" } ?? "")
            device = ["-object", iothread, "-drive", drive, "-device", "virtio-blk-pci,drive=d0,iothread=io0"]
        }
        // With a network, the host end is being set up meanwhile: a longer first hold leaves room.
        let hold = load.workload.isNetwork ? networkHoldMilliseconds : holdMilliseconds
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
                "-enable-kvm", "-cpu", "host,-arch-capabilities", "-m", "256", "-display", "none", "-no-reboot",
                "-nodefaults", "-name", "bench\(index),debug-threads=on", "-serial", "stdio", "-qmp",
                "unix:\(socket),server=on,wait=off",
                "-kernel", guest, "-append", load.guestCommandLine(holdMilliseconds: hold, verify: disk.hasPattern),
            ] + device
        // The marks' samples; the monitor is connected at the first (QEMU listens long before).
        var monitor: BenchQMP?
        var exitSamples: [UInt64] = []
        var monitorError: Error?
        // The TAP's host end is set up as soon as QEMU has made the TAP (at its start, long before
        // the guest's first request), on a thread of its own: the console is read meanwhile.
        let tapSetup = Lock<Result<Void, any Error>?>(nil)
        let tapThread =
            try load.workload.isNetwork
            ? HostThread(name: "bench-tap") {
                let result = Result { try BenchTAP.configure(tap) }
                tapSetup.withLock { $0 = result }
            } : nil
        let output: String
        do {
            output = try BenchProcess.run(executable, arguments, running: running, interrupted: interrupted) { line in
                guard monitorError == nil, line.hasSuffix("iobench: start") || line.hasSuffix("iobench: end") else {
                    return
                }
                do {
                    let connected = try monitor ?? BenchQMP(socket: socket)
                    if monitor == nil {
                        try pin(
                            try connected.threadIDs(), placement: placement(sideCores: sideCores, vms: vms),
                            index: index)
                    }
                    monitor = connected
                    exitSamples.append(try connected.exits())
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
        if let error = output.split(whereSeparator: \.isNewline).first(where: { $0.contains("iobench: error") }) {
            throw BenchError("the iobench guest failed under QEMU: \(error)")
        }
        guard let result = IOBenchResult(lines: output.split(whereSeparator: \.isNewline).map(String.init)) else {
            throw BenchError("QEMU ended without the guest's result: \(output.suffix(300))")
        }
        guard exitSamples.count == 2 else { throw BenchError("QEMU's guest did not pass both marks") }
        var measurement = result.measurement
        measurement.exitsPerRequest = Double(exitSamples[1] &- exitSamples[0]) / Double(max(measurement.requests, 1))
        return measurement
    }

    private static func pin(_ threads: (vcpus: [Int32], iothreads: [Int32]), placement: CPUPlacement, index: Int) throws
    {
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
