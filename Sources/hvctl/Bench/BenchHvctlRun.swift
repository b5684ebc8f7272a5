import Hypervisor
import VirtioDevices
import VMM

/// One hvctl cell: the iobench guest run in this process through the VMM runtime, as `hvctl run`
/// runs it, with the statistics sampled at the guest's start and end marks (it holds each for
/// `holdMilliseconds`, so the sample lands while it waits).
enum BenchHvctlRun {
    static let holdMilliseconds = 20

    /// The runtime's counters at a mark.
    private struct Sample {
        var exits: UInt64 = 0
        var interrupts: UInt64 = 0
        var sideCoreNanoseconds: UInt64 = 0
        var latency = LatencyBuckets.Snapshot(counts: Array(repeating: 0, count: LatencyBuckets.count), sum: 0)

        init() {}

        init(_ report: StatisticsReport) {
            let vm = report.vms[0]
            exits = vm.vcpus.reduce(0) { $0 + ($1.kvm["exits"] ?? 0) }
            let queues = vm.devices.flatMap(\.queues)
            interrupts = queues.reduce(0) { $0 + $1.interrupts }
            sideCoreNanoseconds = report.sideCores.reduce(0) { $0 + ($1.cpuNanoseconds ?? 0) }
            for queue in queues {
                latency.sum += queue.latencyBuckets.sum
                for (index, count) in queue.latencyBuckets.counts.enumerated() { latency.counts[index] += count }
            }
        }
    }

    /// hvctl's defaults for the side-core modes; their CPUPlacement is where the bench puts QEMU's
    /// threads too (BenchQEMURun).
    static func sideCores(hybrid: Bool) -> SideCoreConfiguration {
        SideCoreConfiguration(
            mode: hybrid ? .hybrid : .poll, count: IOEngineOptions.defaultSideCores,
            pollMaxNanoseconds: UInt64(IOEngineOptions.defaultPollMaxMicroseconds) * 1_000)
    }

    /// Runs one measurement. `running` holds the runtime while it runs, so Ctrl-C can end it;
    /// `interrupted` is asked once it is there (a signal between the two is not missed).
    static func measure(
        guest: String, disk: BenchDisk, mode: BenchMode, coalescing: Bool, load: BenchLoad,
        running: Lock<VMMRuntime?>, interrupted: Lock<Int32?>
    ) throws -> BenchMeasurement {
        var deviceConfiguration: BlockDeviceConfiguration
        switch disk {
        case .file(let path, _):
            deviceConfiguration = BlockDeviceConfiguration(path: path, id: "bench")
            deviceConfiguration.readOnly = load.workload.writePercent == 0
        case .null(let bytes):
            deviceConfiguration = BlockDeviceConfiguration(path: nil, id: "bench")
            deviceConfiguration.backend = .null
            deviceConfiguration.nullSizeInBytes = bytes
        }
        let cmdline = load.guestCommandLine(holdMilliseconds: holdMilliseconds, verify: disk.hasPattern)
        let machine = MachineConfiguration(
            boot: LinuxBootConfiguration(kernelPath: guest, commandLine: cmdline), vcpuCount: 1,
            memoryInBytes: 256 << 20)
        let vm = VMConfiguration(name: "bench", machine: machine, disks: [deviceConfiguration])
        let io: IOConfiguration
        switch mode {
        case .notify:
            io = IOConfiguration(engine: .notify)
        case .poll, .hybrid:
            var sideCores = sideCores(hybrid: mode == .hybrid)
            if !coalescing { sideCores.coalescing = nil }
            io = IOConfiguration(engine: .sideCores(sideCores))
        }

        // The console: lines are read as they come; the marks sample the runtime on the vCPU thread,
        // which waits at the mark anyway.
        let state = Lock((line: [UInt8](), samples: [Sample](), results: [String](), error: String?.none))
        let runtimeBox = Lock<VMMRuntime?>(nil)
        let runtime = try VMMRuntime(vms: [vm], io: io, kvm: try KVM(), namedVMs: false) { _ in
            return { byte in
                guard byte == UInt8(ascii: "\n") else {
                    // A serial console ends lines with CR LF: the CR is not part of the line.
                    if byte != UInt8(ascii: "\r") {
                        state.withLock { if $0.line.count < 4096 { $0.line.append(byte) } }
                    }
                    return
                }
                let line = state.withLock { state -> String in
                    defer { state.line = [] }
                    return String(decoding: state.line, as: UTF8.self)
                }
                if line.hasSuffix("iobench: start") || line.hasSuffix("iobench: end") {
                    let sample = (try? runtimeBox.withLock { $0 }?.statistics()).map(Sample.init) ?? Sample()
                    state.withLock { $0.samples.append(sample) }
                } else if line.contains("iobench: result") || line.contains("iobench: histogram") {
                    state.withLock { $0.results.append(line) }
                } else if line.contains("iobench: error") {
                    state.withLock { $0.error = line }
                }
            }
        }
        runtimeBox.withLock { $0 = runtime }
        running.withLock { $0 = runtime }
        defer {
            // The console closure holds the box: emptying it lets the runtime go (and its disk close
            // and unlock) before the next cell opens the file.
            runtimeBox.withLock { $0 = nil }
            running.withLock { $0 = nil }
        }
        if let signal = interrupted.withLock({ $0 }) { runtime.stop(.stopped(signal: signal)) }
        let exits = try runtime.run()
        _ = try runtime.finish(exits: exits)
        let (samples, lines, error) = state.withLock { ($0.samples, $0.results, $0.error) }
        let result = IOBenchResult(lines: lines)
        if let error { throw BenchError("the iobench guest failed: \(error)") }
        guard exits == [.powerOff], let result, samples.count == 2 else {
            throw BenchError("the iobench guest did not finish (exit: \(exits.map(\.description).joined()))")
        }
        var measurement = result.measurement
        let requestCount = Double(max(measurement.requests, 1))
        let (start, end) = (samples[0], samples[1])
        measurement.exitsPerRequest = Double(end.exits &- start.exits) / requestCount
        measurement.interruptsPerRequest = Double(end.interrupts &- start.interrupts) / requestCount
        if mode != .notify {
            let busy = Double(end.sideCoreNanoseconds &- start.sideCoreNanoseconds)
            measurement.sideCoreNanosecondsPerRequest = busy / requestCount
            measurement.iopsPerSideCoreSecond = busy > 0 ? requestCount / (busy / 1e9) : nil
        }
        var latency = end.latency
        latency.sum &-= start.latency.sum
        for index in latency.counts.indices { latency.counts[index] &-= start.latency.counts[index] }
        measurement.deviceLatency = LatencySummary(latency)
        return measurement
    }
}
