import Hypervisor
import VirtioDevices
import VMM

/// One boot of the Linux bench guest under hvctl, in this process through the VMM runtime: every
/// load in turn, hvctl's statistics sampled at each load's go and end marks (on the vCPU thread,
/// while the guest waits for its console write).
enum BenchFioHvctlRun {
    /// Runs `loads` (`seconds` each) in one boot with the guest's `commandLine`; a measurement per
    /// load. A boot that stops making progress is stopped (FioWatchdog).
    /// `onEvent` sees each of the guest's marks and outputs as they come (for the progress line).
    static func measure(
        guest: FioGuest, disk: BenchDisk, mode: BenchMode, coalescing: Bool, redirect: RedirectSetting,
        sideCoreCount: Int, loads: [FioLoad],
        commandLine: String, seconds: Int, running: Lock<VMMRuntime?>, interrupted: Lock<Int32?>,
        onEvent: @escaping @Sendable (FioConsole.Event) -> Void
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
        let watchdog = try FioWatchdog(loadSeconds: seconds) { message in
            running.withLock { $0 }?.stop(.failed(message))
        }
        let exits = try watchdog.guarding(consoleEnd: { state.withLock { $0.boot.consoleEnd } }) {
            try BenchHvctlRun.runToEnd(
                vms: [vm], io: io, tap: network ? (tap, true) : nil, workload: "tcp-stream", running: running,
                interrupted: interrupted
            ) { _, line, statistics in
                let event = state.withLock { $0.boot.take(line) }
                if let event {
                    watchdog.note(event, loads: loads)
                    onEvent(event)
                }
                switch event {
                case .go(let load):
                    let sample = statistics().map { BenchHvctlRun.Sample($0, vm: 0) }
                    state.withLock { $0.starts[load] = sample }
                case .end(let load, _):
                    let sample = statistics().map { BenchHvctlRun.Sample($0, vm: 0) }
                    state.withLock { $0.ends[load] = sample }
                case .start, .output, nil: break
                }
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
