import ArgumentParser
import FoundationEssentials
import Glibc
import Hypervisor
import VMM

/// The disk a benchmark reads.
enum BenchDisk: Sendable {
    /// A pattern file (`blocks` 4 KiB blocks).
    case file(String, blocks: UInt64)
    /// The null backend: requests complete without storage (no pattern to verify).
    case null(bytes: UInt64)

    /// Whether the guest checks what it reads (the null backend returns no pattern).
    var hasPattern: Bool {
        if case .file = self { return true }
        return false
    }
}

/// hvctl's I/O modes as bench targets.
enum BenchMode: String, CaseIterable, Sendable {
    case poll, hybrid, notify
}

/// `hvctl bench`: the I/O-path benchmark. Each target (hvctl in each mode, QEMU, the host's own
/// io_uring loop) runs the same workloads (random reads, writes or both, at each request size and
/// queue depth), `--repeat` times, in one process run on one machine; a table with the spread and
/// the ratios, a JSON record and a plot.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark the block I/O path: hvctl's modes against QEMU and the host's own io_uring limit.")

    @Option(
        help: ArgumentHelp(
            "Workloads: randread, randwrite (writes the pattern back), randrw (half each); net-rr (ICMP echo "
                + "round trips to a TAP's host end), net-stream (UDP frames to it).",
            valueName: "list"))
    var workload = "randread"

    @Option(help: ArgumentHelp("Request sizes: multiples of 4k from 4k to 128k, e.g. 4k,64k.", valueName: "list"))
    var bs = "4k"

    @Option(help: ArgumentHelp("Queue depths, e.g. 1,16,64 (1 to 64).", valueName: "list"))
    var qd = "1,16"

    @Option(help: ArgumentHelp("hvctl's I/O modes to measure: poll, hybrid, notify.", valueName: "list"))
    var mode = "poll,hybrid"

    @Flag(
        help: ArgumentHelp(
            "The guest asks for a completion interrupt per request, as an interrupt-driven driver does (it still polls "
                + "its used ring; its CPU drops the interrupts), so the VMM's interrupt path is measured."))
    var irq = false

    @Option(
        help: ArgumentHelp(
            "Open loop for the block workloads: a new request every 1/rate s while fewer than --qd are out "
                + "(requests/s); latency then counts from when a request was due. No host row.", valueName: "n"))
    var rate: UInt64?

    @Option(
        name: .customLong("irq-coalesce"),
        help: ArgumentHelp(
            "With --irq: hvctl's side-core modes with interrupt coalescing on, off, or both (on,off).",
            valueName: "list"))
    var irqCoalesce = "on"

    @Option(
        help: ArgumentHelp(
            "VMs measured at once, each with its own disk (a pattern file each, or --disk shared read-only); hvctl's "
                + "share its side cores, QEMU's are one process each, the host runs one loop per VM. The figures are "
                + "their sums (IOPS) and request-weighted means.", valueName: "n"))
    var vms = 1

    @Option(
        name: .customLong("side-cores"),
        help: ArgumentHelp(
            "hvctl's side cores in poll and hybrid modes (default 1), shared by the VMs; QEMU's I/O threads are "
                + "pinned to the same CPUs.", valueName: "n"))
    var sideCores = IOEngineOptions.defaultSideCores

    @Option(help: ArgumentHelp("Peers measured in the same run: host, qemu, or none.", valueName: "list"))
    var peer = "host,qemu"

    @Option(
        name: .customLong("qemu-poll-max-ns"),
        help: ArgumentHelp(
            "QEMU's iothread polling limits to measure besides its default, e.g. 0,65536,262144; the table "
                + "compares with QEMU's default and with its best.", valueName: "list"))
    var qemuPollMaxNanoseconds: String?

    @Option(
        help: ArgumentHelp(
            "Requests per run (each run also verifies every block it reads); with --duration, a cap. Default 200000.",
            valueName: "n"))
    var requests: UInt64?

    @Option(help: ArgumentHelp("Seconds per run instead of a number of requests (up to 3600).", valueName: "seconds"))
    var duration: Double?

    @Option(help: "Runs per cell; the table shows their median and spread.")
    var `repeat` = 3

    @Option(
        help: ArgumentHelp(
            "The file to read (its 4 KiB blocks must start with their sector number; write workloads write "
                + "that pattern); default: a 64 MiB pattern file created and removed.", valueName: "file"))
    var disk: String?

    @Flag(help: "Read the null backend instead of a file (the I/O path alone; nothing to verify, no host peer).")
    var null = false

    @Option(help: ArgumentHelp("The iobench guest (default: next to hvctl, or guest-images/out).", valueName: "path"))
    var guest: String?

    @Option(help: ArgumentHelp("Write every figure and the environment as JSON to this file.", valueName: "file"))
    var json: String?

    @Option(
        help: ArgumentHelp(
            "Draw IOPS by queue depth and every configuration's latency distribution as SVG to this file.",
            valueName: "file.svg"))
    var plot: String?

    func validate() throws {
        _ = try coalescingSettings()
        _ = try qemuPollLimits()
        _ = try BenchWorkload.parse(workload)
        _ = try BenchBlockSize.parse(bs)
        _ = try queueDepths()
        _ = try modes()
        _ = try peers()
        guard (1...100).contains(self.repeat) else { throw ValidationError("--repeat \(self.repeat): 1 to 100") }
        if let requests, !(1...100_000_000_000).contains(requests) {
            throw ValidationError("--requests \(requests): 1 to 100000000000")
        }
        if let duration, !(duration >= 0.001 && duration <= 3600) {
            throw ValidationError("--duration \(duration): 0.001 to 3600 seconds")
        }
        if null && disk != nil { throw ValidationError("--null: not with --disk") }
        guard (1...16).contains(vms) else { throw ValidationError("--vms \(vms): 1 to 16") }
        if let rate {
            guard (1...10_000_000).contains(rate) else { throw ValidationError("--rate \(rate): 1 to 10000000") }
            if try BenchWorkload.parse(workload).contains(where: \.isNetwork) {
                throw ValidationError("--rate \(rate): for the block workloads only")
            }
        }
        guard (1...64).contains(sideCores) else { throw ValidationError("--side-cores \(sideCores): 1 to 64") }
        if vms > 1, try BenchWorkload.parse(workload).contains(where: \.isNetwork) {
            throw ValidationError(
                "--vms \(vms): the network workloads run one VM (each VM's TAP would need a subnet of its own)")
        }
        if vms > 1, let disk, try BenchWorkload.parse(workload).contains(where: { $0.writePercent > 0 }) {
            throw ValidationError(
                "--disk \(disk): --vms \(vms) with a write workload needs a disk per VM (leave --disk out: each VM "
                    + "then writes a pattern file of its own)")
        }
    }

    func queueDepths() throws -> [Int] {
        try qd.split(separator: ",", omittingEmptySubsequences: false).map {
            guard let depth = Int($0), (1...64).contains(depth) else {
                throw ValidationError("--qd \(qd): '\($0)' is not a queue depth from 1 to 64")
            }
            return depth
        }
    }

    /// `--irq-coalesce`: true for on, false for off, in the order given.
    func coalescingSettings() throws -> [Bool] {
        let settings = try irqCoalesce.split(separator: ",", omittingEmptySubsequences: false).map {
            guard $0 == "on" || $0 == "off" else {
                throw ValidationError("--irq-coalesce \(irqCoalesce): '\($0)' is not on or off")
            }
            return $0 == "on"
        }
        if settings.contains(false) && !irq {
            throw ValidationError(
                "--irq-coalesce \(irqCoalesce): only with --irq (without it the guest asks for no interrupts)")
        }
        return settings
    }

    func modes() throws -> [BenchMode] {
        try mode.split(separator: ",", omittingEmptySubsequences: false).map {
            guard let mode = BenchMode(rawValue: String($0)) else {
                throw ValidationError("--mode \(mode): '\($0)' is not poll, hybrid or notify")
            }
            return mode
        }
    }

    /// Requests per run: `--requests`, else 200000, or with `--duration` as many as fit.
    var requestCap: UInt64 { requests ?? (duration == nil ? 200_000 : 100_000_000_000) }

    var durationMilliseconds: UInt64? { duration.map { UInt64(($0 * 1000).rounded()) } }

    /// `--qemu-poll-max-ns`: the limits in nanoseconds (QEMU's default is measured anyway).
    func qemuPollLimits() throws -> [UInt64] {
        guard let qemuPollMaxNanoseconds else { return [] }
        let limits = try qemuPollMaxNanoseconds.split(separator: ",", omittingEmptySubsequences: false).map {
            guard let limit = UInt64($0), limit <= 1_000_000_000 else {
                throw ValidationError(
                    "--qemu-poll-max-ns \(qemuPollMaxNanoseconds): '\($0)' is not a number of nanoseconds up to 1000000000"
                )
            }
            return limit
        }
        if !((try? peers()) ?? []).contains("qemu") {
            throw ValidationError("--qemu-poll-max-ns: only with --peer qemu")
        }
        return limits
    }

    func peers() throws -> [String] {
        let names = peer.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        if names == ["none"] { return [] }
        for name in names where name != "host" && name != "qemu" {
            throw ValidationError("--peer \(peer): '\(name)' is not host, qemu or none")
        }
        if names.contains("qemu") && !BenchQEMURun.isInstalled {
            throw ValidationError(
                "--peer qemu: \(BenchQEMURun.executable) is not installed (apt-get install qemu-system-x86)")
        }
        return names
    }

    func run() throws {
        // The VMs' own events (a device's activation, say) stay out of the table; warnings show.
        HVCtlLog.bootstrap(level: .warning, destination: .standardError)
        let guestPath = try guestImage()
        let workloads = try BenchWorkload.parse(workload)
        let blockSizes = try BenchBlockSize.parse(bs)
        let depths = try queueDepths()
        let coalescing = try coalescingSettings()
        var targets = try modes().flatMap { mode in
            // Notify mode has no coalescing to turn off: the side cores do it.
            mode == .notify
                ? [BenchTarget.hvctl(mode, coalescing: true)] : coalescing.map { .hvctl(mode, coalescing: $0) }
        }
        let peers = try peers()
        if peers.contains("qemu") {
            targets.append(.qemu(pollMaxNanoseconds: nil))
            targets += try qemuPollLimits().map { .qemu(pollMaxNanoseconds: $0) }
        }
        if peers.contains("host") && !null { targets.append(.host) }

        // A bad --json or --plot path fails before minutes of measuring, not after.
        let jsonFile = try json.map { try OutputFile(flag: "--json", path: $0) }
        let plotFile = try plot.map { try OutputFile(flag: "--plot", path: $0) }
        SignalWatcher.blockInThisThread()
        let scratch = try BenchScratch(disk: disk, null: null, count: vms)
        defer { scratch.remove() }
        let runningVMM = Lock<VMMRuntime?>(nil)
        let runningChildren = Lock<Set<Int32>>([])
        let interrupted = Lock<Int32?>(nil)
        let signals = try SignalWatcher { signal in
            interrupted.withLock { $0 = signal }
            runningVMM.withLock { $0 }?.stop(.stopped(signal: signal))
            for pid in runningChildren.withLock({ $0 }) { kill(pid, SIGKILL) }
        }
        defer { signals.stop() }

        var report = BenchReport(environment: .current(qemu: peers.contains("qemu")), options: options(), cells: [])
        let progress = BenchProgress()
        let loads = workloads.flatMap { workload in
            // A network workload has its own frame size and depth: one load, whatever --bs and --qd say.
            let shapes =
                workload.networkShape.map { [($0.frameBytes, $0.qd)] }
                ?? blockSizes.flatMap { size in depths.map { (size, $0) } }
            return shapes.map {
                BenchLoad(
                    workload: workload, blockSize: $0.0, qd: $0.1, requests: requestCap,
                    durationMilliseconds: durationMilliseconds, interrupts: irq, rate: rate)
            }
        }
        cells: for load in loads {
            // The host loop reads files, and QEMU's polling limits are its iothread's: neither has a
            // network counterpart (QEMU 7.2 serves virtio-net from its main loop).
            // Nor has an open loop: the host loop keeps qd in flight.
            for target in targets
            where (!load.workload.isNetwork || target.servesNetworks)
                && (load.rate == nil || !target.isHost)
            {
                var cell = BenchReport.Cell(
                    target: target.name, workload: load.workload.rawValue, blockSize: load.blockSize, qd: load.qd,
                    runs: [])
                let label = "\(target.name) \(cell.configuration)"
                for index in 0..<self.repeat {
                    if interrupted.withLock({ $0 }) != nil { break }
                    progress.show("\(label) run \(index + 1)/\(self.repeat)")
                    let measurement: BenchMeasurement
                    do {
                        switch target {
                        case .hvctl(let mode, let coalescing):
                            measurement = try BenchHvctlRun.measure(
                                guest: guestPath, disks: scratch.disks, mode: mode, coalescing: coalescing,
                                sideCoreCount: sideCores, load: load, running: runningVMM, interrupted: interrupted)
                        case .qemu(let pollMaxNanoseconds):
                            let (disks, vms, sideCores) = (scratch.disks, self.vms, self.sideCores)
                            measurement = BenchMeasurement.combined(
                                try BenchParallel.run(vms, name: "qemu") { index in
                                    try BenchQEMURun.measure(
                                        guest: guestPath, disk: disks[index], load: load,
                                        pollMaxNanoseconds: pollMaxNanoseconds, index: index, vms: vms,
                                        sideCores: sideCores, running: runningChildren, interrupted: interrupted)
                                })
                        case .host:
                            let files = scratch.disks.compactMap { disk -> (String, UInt64)? in
                                guard case .file(let path, let blocks) = disk else { return nil }
                                return (path, blocks)
                            }
                            guard files.count == vms else { continue }
                            measurement = BenchMeasurement.combined(
                                try BenchParallel.run(vms, name: "host") { index in
                                    try BenchHostRun.measure(disk: files[index].0, blocks: files[index].1, load: load)
                                })
                        }
                    } catch {
                        if interrupted.withLock({ $0 }) != nil { break }
                        throw error
                    }
                    cell.runs.append(measurement)
                    progress.show(
                        "\(label) run \(index + 1)/\(self.repeat): \(Int(measurement.iops)) IOPS", done: true)
                }
                if !cell.runs.isEmpty { report.cells.append(cell) }
                if interrupted.withLock({ $0 }) != nil { break cells }
            }
        }
        progress.clear()
        for line in BenchTable.lines(report) { print(line) }
        try jsonFile?.write(report)
        try plotFile?.write(bytes: Array(BenchPlot.svg(report).utf8))
        if let signal = interrupted.withLock({ $0 }) {
            printError("hvctl: bench stopped by signal \(signal); the table holds what was measured")
            throw ExitCode(128 + signal)
        }
        let errors = report.cells.flatMap(\.runs).reduce(0) { $0 + $1.errors }
        if errors > 0 {
            printError("hvctl: bench: \(errors) requests failed or read the wrong data")
            throw ExitCode.failure
        }
    }

    private func options() -> BenchReport.Options {
        BenchReport.Options(
            workloads: (try? BenchWorkload.parse(workload).map(\.rawValue)) ?? [],
            blockSizes: (try? BenchBlockSize.parse(bs)) ?? [], qd: (try? queueDepths()) ?? [],
            modes: (try? modes().map(\.rawValue)) ?? [],
            peers: (try? peers()) ?? [], qemuPollMaxNanoseconds: (try? qemuPollLimits()) ?? [], requests: requestCap,
            durationMilliseconds: durationMilliseconds, interrupts: irq,
            interruptCoalescing: ((try? coalescingSettings()) ?? []).map { $0 ? "on" : "off" }, rate: rate,
            repeat: self.repeat,
            disk: disk ?? (null ? "null" : "pattern"), pinning: pinning, vms: vms, sideCores: sideCores)
    }

    /// The placement both peers share, in words for the JSON record.
    private var pinning: String {
        let placement = BenchQEMURun.placement(sideCores: sideCores, vms: vms)
        let cpus = placement.sideCoreCPUs.map { $0.map(String.init) ?? "any" }
        let vcpus = placement.vcpuCPUs.map { "CPUs " + $0.map(String.init).joined(separator: ",") } ?? "any CPU"
        let hvctl =
            "hvctl poll and hybrid: \(sideCores == 1 ? "side core" : "side cores") on CPU "
            + "\(cpus.joined(separator: ",")), \(vms == 1 ? "vCPU" : "vCPUs") on \(vcpus)"
        let qemu =
            vms == 1
            ? "QEMU: iothread on CPU \(cpus.first ?? "any"), vCPU on \(vcpus)"
            : "QEMU: VM i's iothread on side core (i mod \(sideCores))'s CPU, vCPUs on \(vcpus)"
        return "\(hvctl); \(qemu), its other threads unpinned; hvctl notify mode and the host loops: unpinned"
    }

    /// `--guest`, or iobench.elf next to hvctl or in guest-images/out.
    private func guestImage() throws -> String {
        if let guest {
            guard access(guest, R_OK) == 0 else {
                throw ValidationError("--guest \(guest): \(String(cString: strerror(errno)))")
            }
            return guest
        }
        let executable = Self.executablePath() ?? ""
        let directory = executable.split(separator: "/").dropLast().joined(separator: "/")
        for candidate in ["/\(directory)/iobench.elf", "guest-images/out/iobench.elf"]
        where access(candidate, R_OK) == 0 {
            return candidate
        }
        throw ValidationError(
            "--guest: no iobench.elf next to hvctl or in guest-images/out (run make, or give --guest)")
    }

    /// This hvctl's own path (/proc/self/exe); nil when it cannot be read.
    static func executablePath() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count)
        return count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : nil
    }
}

/// What a cell measures.
enum BenchTarget: Sendable {
    /// hvctl in a mode, with its side cores' interrupt coalescing on or off.
    case hvctl(BenchMode, coalescing: Bool)
    /// QEMU at its iothread's default polling limit (nil) or at the one given.
    case qemu(pollMaxNanoseconds: UInt64?)
    case host

    var name: String {
        switch self {
        case .hvctl(let mode, let coalescing): "hvctl-\(mode.rawValue)" + (coalescing ? "" : "-nocoalesce")
        case .qemu(let limit): limit.map { "qemu-pmn=\($0)" } ?? "qemu"
        case .host: "host"
        }
    }

    var isHost: Bool {
        if case .host = self { return true }
        return false
    }

    /// Whether it runs the network workloads.
    var servesNetworks: Bool {
        switch self {
        case .hvctl: true
        case .qemu(let limit): limit == nil
        case .host: false
        }
    }
}
