import Hypervisor
import VirtioDevices
import VMM

/// One hvctl cell: the iobench guest run in this process through the VMM runtime, as `hvctl run`
/// runs it, with the statistics sampled at the guest's start and end marks (it holds each for
/// `holdMilliseconds`, so the sample lands while it waits).
enum BenchHvctlRun {
    static let holdMilliseconds = 20

    /// One VM's counters, and the side cores' CPU time, at one of its marks.
    struct Sample {
        var exits: UInt64 = 0
        var interrupts: UInt64 = 0
        var sideCoreNanoseconds: UInt64 = 0
        var latency = LatencyBuckets.Snapshot(counts: Array(repeating: 0, count: LatencyBuckets.count), sum: 0)
        /// vCPU 1's wake-ups from halt (KVM's halt_wakeup), and the interrupts sent through a
        /// redirected route: for the redirect workload.
        var secondVCPUWakeups: UInt64 = 0
        var redirected: UInt64 = 0

        init() {}

        /// KVM's exits and the device's interrupts from `start` to this sample, per request of
        /// `measurement` (and for the redirect workload, vCPU 1's wake-ups and the redirected interrupts).
        func addExitsAndInterrupts(since start: Sample, to measurement: inout BenchMeasurement) {
            let requestCount = Double(max(measurement.requests, 1))
            measurement.exitsPerRequest = Double(exits &- start.exits) / requestCount
            measurement.interruptsPerRequest = Double(interrupts &- start.interrupts) / requestCount
            measurement.redirect?.secondVCPUWakeupsPerRequest =
                Double(secondVCPUWakeups &- start.secondVCPUWakeups) / requestCount
            measurement.redirect?.redirectedInterrupts = redirected &- start.redirected
            measurement.redirect?.deviceInterrupts = interrupts &- start.interrupts
        }

        init(_ report: StatisticsReport, vm index: Int) {
            guard report.vms.indices.contains(index) else { return }
            let vm = report.vms[index]
            exits = vm.vcpus.reduce(0) { $0 + ($1.kvm["exits"] ?? 0) }
            let queues = vm.devices.flatMap(\.queues)
            interrupts = queues.reduce(0) { $0 + $1.interrupts }
            redirected = queues.reduce(0) { $0 + $1.redirected }
            secondVCPUWakeups = vm.vcpus.count > 1 ? vm.vcpus[1].kvm["halt_wakeup"] ?? 0 : 0
            sideCoreNanoseconds = report.sideCores.reduce(0) { $0 + ($1.cpuNanoseconds ?? 0) }
            for queue in queues {
                latency.sum += queue.latencyBuckets.sum
                for (index, count) in queue.latencyBuckets.counts.enumerated() { latency.counts[index] += count }
            }
        }
    }

    /// What one VM's console gave: its marks' samples, its result lines, an error line.
    private struct ConsoleState {
        var samples: [Sample] = []
        var results: [String] = []
        var error: String?
    }

    /// hvctl's defaults for the side-core modes (with `count` side cores); their CPUPlacement is
    /// where the bench puts QEMU's threads too (BenchQEMURun).
    static func sideCores(hybrid: Bool, count: Int = IOEngineOptions.defaultSideCores) -> SideCoreConfiguration {
        var configuration = SideCoreConfiguration(
            mode: hybrid ? .hybrid : .poll, count: count,
            pollMaxNanoseconds: UInt64(IOEngineOptions.defaultPollMaxMicroseconds) * 1_000)
        if hybrid {
            configuration.pollWindowCeiling = UInt64(IOEngineOptions.selfSizedPollWindowCeilingMicroseconds) * 1_000
        }
        return configuration
    }

    /// Runs one measurement: one VM per disk in `disks`, all in one runtime, sharing
    /// `sideCoreCount` side cores in poll and hybrid modes.
    static func measure(
        guest: String, disks: [BenchDisk], mode: BenchMode, coalescing: Bool, redirect: RedirectSetting,
        sideCoreCount: Int, load: BenchLoad,
        running: Lock<VMMRuntime?>, interrupted: Lock<Int32?>
    ) throws -> BenchMeasurement {
        let tap = BenchTAP.name(for: "h")
        let vms = disks.enumerated().map { index, disk in
            let name = disks.count == 1 ? "bench" : "bench\(index)"
            let cmdline = load.guestCommandLine(holdMilliseconds: holdMilliseconds, verify: disk.hasPattern)
            let machine = MachineConfiguration(
                boot: LinuxBootConfiguration(kernelPath: guest, commandLine: cmdline),
                vcpuCount: load.workload.vcpus, memoryInBytes: 256 << 20)
            if load.workload.isNetwork {
                // The NIC's TAP is made here and goes with the runtime; BenchTAP sets up its host end.
                let nic = NetDeviceConfiguration(tapName: tap, mac: BenchTAP.guestMACBytes)
                return VMConfiguration(name: name, machine: machine, nets: [nic])
            }
            return VMConfiguration(
                name: name, machine: machine,
                disks: [blockDevice(disk, readOnly: load.workload.writePercent == 0)])
        }
        let io = ioConfiguration(mode: mode, coalescing: coalescing, redirect: redirect, sideCoreCount: sideCoreCount)

        // Each VM's console: lines are read as they come; its marks sample the runtime on its vCPU
        // thread, which waits at the mark anyway.
        let states = vms.map { _ in Lock(ConsoleState()) }
        let exits = try runToEnd(
            vms: vms, io: io, tap: load.workload.isNetwork ? (tap, false) : nil, workload: load.workload.rawValue,
            running: running, interrupted: interrupted
        ) { index, line, statistics in
            let state = states[index]
            if line.hasSuffix("iobench: start") || line.hasSuffix("iobench: end") {
                let sample = statistics().map { Sample($0, vm: index) } ?? Sample()
                state.withLock { $0.samples.append(sample) }
            } else if line.contains("iobench: result") || line.contains("iobench: histogram") {
                state.withLock { $0.results.append(line) }
            } else if line.contains("iobench: error") {
                state.withLock { $0.error = line }
            }
        }
        var parts: [BenchMeasurement] = []
        var sideCoreStart = UInt64.max
        var sideCoreEnd: UInt64 = 0
        var deviceLatency = LatencyBuckets.Snapshot(counts: Array(repeating: 0, count: LatencyBuckets.count), sum: 0)
        for (index, state) in states.enumerated() {
            let (samples, lines, error) = state.withLock { ($0.samples, $0.results, $0.error) }
            let vm = vms.count == 1 ? "" : " of VM \(vms[index].name)"
            if let error { throw BenchError("the iobench guest\(vm) failed: \(error)") }
            guard exits[index] == .powerOff, let result = IOBenchResult(lines: lines), samples.count == 2 else {
                throw BenchError("the iobench guest\(vm) did not finish (exit: \(exits[index].description))")
            }
            var measurement = result.measurement
            let (start, end) = (samples[0], samples[1])
            end.addExitsAndInterrupts(since: start, to: &measurement)
            parts.append(measurement)
            sideCoreStart = min(sideCoreStart, start.sideCoreNanoseconds)
            sideCoreEnd = max(sideCoreEnd, end.sideCoreNanoseconds)
            deviceLatency.sum &+= end.latency.sum &- start.latency.sum
            for bucket in deviceLatency.counts.indices {
                deviceLatency.counts[bucket] &+= end.latency.counts[bucket] &- start.latency.counts[bucket]
            }
        }
        var measurement = BenchMeasurement.combined(parts)
        if mode != .notify {
            // The side cores serve every VM: their time from the first VM's start to the last one's end.
            let requestCount = Double(max(measurement.requests, 1))
            let busy = Double(sideCoreEnd &- min(sideCoreStart, sideCoreEnd))
            measurement.sideCoreNanosecondsPerRequest = busy / requestCount
            measurement.iopsPerSideCoreSecond = busy > 0 ? requestCount / (busy / 1e9) : nil
        }
        measurement.deviceLatency = LatencySummary(deviceLatency)
        return measurement
    }

    /// The bench disk as hvctl's block device.
    static func blockDevice(_ disk: BenchDisk, readOnly: Bool) -> BlockDeviceConfiguration {
        var device: BlockDeviceConfiguration
        switch disk {
        case .file(let path, _):
            device = BlockDeviceConfiguration(path: path, id: "bench")
            device.readOnly = readOnly
        case .null(let bytes):
            device = BlockDeviceConfiguration(path: nil, id: "bench")
            device.backend = .null
            device.nullSizeInBytes = bytes
        }
        return device
    }

    /// Builds the runtime of `vms`, each console line handed to `onLine` with the VM's index and a
    /// way to read the runtime's statistics right then (on the vCPU thread, while the guest waits
    /// for its console write); sets up `tap`'s host end, when given, once the runtime has made the
    /// TAP; and runs it to its end. `running` holds the runtime meanwhile, so Ctrl-C can end it;
    /// `interrupted` is asked once it is there (a signal between the two is not missed).
    /// `workload` names the run in errors.
    static func runToEnd(
        vms: [VMConfiguration], io: IOConfiguration, tap: (name: String, guestSpeaksARP: Bool)?, workload: String,
        running: Lock<VMMRuntime?>, interrupted: Lock<Int32?>,
        onLine: @escaping @Sendable (Int, String, () -> StatisticsReport?) -> Void
    ) throws -> [MachineExit] {
        let runtimeBox = Lock<VMMRuntime?>(nil)
        let runtime: VMMRuntime
        do {
            runtime = try makeRuntime(vms: vms, io: io) { index, line in
                onLine(index, line) { try? runtimeBox.withLock { $0 }?.statistics() }
            }
        } catch let error as VMBuildError {
            // A TAP hvctl may not create is the likely one: say which and why, in one line.
            if let problem = error.underlying as? ConfigurationError, problem.field == .netTAPName {
                throw BenchError(
                    "--workload \(workload): TAP \(problem.value ?? tap?.name ?? ""): \(problem.problem)"
                        + " (creating a TAP needs CAP_NET_ADMIN)")
            }
            throw BenchError("the bench VM could not be built: \(error.underlying)")
        }
        runtimeBox.withLock { $0 = runtime }
        running.withLock { $0 = runtime }
        defer {
            // The console closures hold the box: emptying it lets the runtime go (and its disks close
            // and unlock) before the next run opens the files.
            runtimeBox.withLock { $0 = nil }
            running.withLock { $0 = nil }
        }
        // The TAP exists once the runtime does; a host end that cannot be set up ends the run
        // before it starts (it still goes through run and finish, which stop the side cores).
        var setupError: Error?
        if let tap {
            do {
                try BenchTAP.configure(tap.name, guestSpeaksARP: tap.guestSpeaksARP)
            } catch {
                setupError = error
                runtime.stop(.failed("\(error)"))
            }
        }
        if let signal = interrupted.withLock({ $0 }) { runtime.stop(.stopped(signal: signal)) }
        let exits: [MachineExit]
        do {
            exits = try runtime.run()
        } catch {
            // Taken down all the same (its side cores stop), then the failure is told.
            _ = try? runtime.finish(exits: runtime.vms.map { _ in .failed("\(error)") })
            throw error
        }
        _ = try runtime.finish(exits: exits)
        if let setupError { throw setupError }
        return exits
    }

    /// hvctl's I/O engine for a bench target: notify threads, or `sideCoreCount` side cores in
    /// poll or hybrid mode with their coalescing on or off; interrupt redirection as `hvctl run
    /// --irq-redirect` sets it.
    static func ioConfiguration(mode: BenchMode, coalescing: Bool, redirect: RedirectSetting, sideCoreCount: Int)
        -> IOConfiguration
    {
        let redirection = redirect.mode(postedInterrupts: HostReport.postedInterrupts != nil)
        switch mode {
        case .notify:
            return IOConfiguration(engine: .notify, interruptRedirection: redirection)
        case .poll, .hybrid:
            var sideCores = sideCores(hybrid: mode == .hybrid, count: sideCoreCount)
            if !coalescing { sideCores.coalescing = nil }
            return IOConfiguration(engine: .sideCores(sideCores), interruptRedirection: redirection)
        }
    }

    /// The runtime of `vms`, each console's lines handed to `onLine` as they come, with the index
    /// of the VM that printed it, on that VM's vCPU thread (so a mark's statistics are sampled
    /// while the guest waits for its console write).
    static func makeRuntime(
        vms: [VMConfiguration], io: IOConfiguration, onLine: @escaping @Sendable (Int, String) -> Void
    ) throws -> VMMRuntime {
        try VMMRuntime(vms: vms, io: io, kvm: try KVM(), namedVMs: false) { configuration in
            let index = vms.firstIndex { $0.name == configuration.name } ?? 0
            let line = Lock<[UInt8]>([])
            return { byte in
                guard byte == UInt8(ascii: "\n") else {
                    // A serial console ends lines with CR LF: the CR is not part of the line.
                    if byte != UInt8(ascii: "\r") {
                        line.withLock { if $0.count < 4096 { $0.append(byte) } }
                    }
                    return
                }
                let text = line.withLock { line -> String in
                    defer { line = [] }
                    return String(decoding: line, as: UTF8.self)
                }
                onLine(index, text)
            }
        }
    }
}
