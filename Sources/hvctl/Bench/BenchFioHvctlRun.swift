import Hypervisor
import VirtioDevices
import VMM

/// One boot of the Linux bench guest under hvctl, in this process through the VMM runtime: every
/// load in turn, hvctl's statistics sampled at each load's marks (on the vCPU thread, while the
/// guest waits for its console write).
enum BenchFioHvctlRun {
    /// Runs `loads` in one boot with the guest's `commandLine`; a measurement per load.
    /// `onStart` is told each load's number as it starts.
    static func measure(
        guest: FioGuest, disk: BenchDisk, mode: BenchMode, coalescing: Bool, redirect: RedirectSetting,
        sideCoreCount: Int, loads: [FioLoad],
        commandLine: String, running: Lock<VMMRuntime?>, interrupted: Lock<Int32?>,
        onStart: @escaping @Sendable (Int) -> Void
    ) throws -> [BenchMeasurement] {
        let network = loads.contains { $0.workload.isNetwork }
        let tap = BenchTAP.name(for: "h")
        let machine = MachineConfiguration(
            boot: LinuxBootConfiguration(kernelPath: guest.kernel, initrdPath: guest.initrd, commandLine: commandLine),
            vcpuCount: guest.cpus, memoryInBytes: UInt64(FioGuest.memoryMiB) << 20)
        let nets = network ? [NetDeviceConfiguration(tapName: tap, mac: BenchTAP.guestMACBytes)] : []
        let disk = BenchHvctlRun.blockDevice(disk, readOnly: !loads.contains { $0.workload.writes })
        let vm = VMConfiguration(name: "bench", machine: machine, disks: [disk], nets: nets)
        let io = BenchHvctlRun.ioConfiguration(
            mode: mode, coalescing: coalescing, redirect: redirect, sideCoreCount: sideCoreCount)

        struct State {
            var boot = FioBoot()
            var starts: [Int: BenchHvctlRun.Sample] = [:]
            var ends: [Int: BenchHvctlRun.Sample] = [:]
        }
        let state = Lock(State())
        let exits = try BenchHvctlRun.runToEnd(
            vms: [vm], io: io, tap: network ? (tap, true) : nil, workload: "tcp-stream", running: running,
            interrupted: interrupted
        ) { _, line, statistics in
            switch state.withLock({ $0.boot.take(line) }) {
            case .start(let load):
                onStart(load)
                let sample = statistics().map { BenchHvctlRun.Sample($0, vm: 0) }
                state.withLock { $0.starts[load] = sample }
            case .end(let load, _):
                let sample = statistics().map { BenchHvctlRun.Sample($0, vm: 0) }
                state.withLock { $0.ends[load] = sample }
            case .output, nil: break
            }
        }
        let (boot, starts, ends) = state.withLock { ($0.boot, $0.starts, $0.ends) }
        var measurements = try boot.measurements(loads, who: "hvctl (exit: \(exits[0].description))")
        for index in measurements.indices {
            guard let start = starts[index + 1], let end = ends[index + 1] else {
                throw BenchError("hvctl's statistics could not be read at load \(index + 1)'s marks")
            }
            end.addExitsAndInterrupts(since: start, to: &measurements[index])
            let requestCount = Double(max(measurements[index].requests, 1))
            if mode != .notify {
                let busy = Double(end.sideCoreNanoseconds &- start.sideCoreNanoseconds)
                measurements[index].sideCoreNanosecondsPerRequest = busy / requestCount
                measurements[index].iopsPerSideCoreSecond = busy > 0 ? requestCount / (busy / 1e9) : nil
            }
            measurements[index].deviceLatency = LatencySummary(end.latency.since(start.latency))
        }
        return measurements
    }
}
