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

/// `hvctl bench`: the I/O-path benchmarks, with the iobench guest (the default) or a Linux guest
/// running fio.
struct BenchGroup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark the I/O path: hvctl's modes against QEMU and the host's own limit, in one run.",
        subcommands: [Bench.self, BenchFio.self], defaultSubcommand: Bench.self)
}

/// `hvctl bench` (`hvctl bench iobench`): the I/O-path benchmark. Each target (hvctl in each mode, QEMU, the host's own
/// io_uring loop) runs the same workloads (random reads, writes or both, at each request size and
/// queue depth), `--repeat` times, in one process run on one machine; a table with the spread and
/// the ratios, a JSON record and a plot.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iobench",
        abstract: "Benchmark the I/O path with the iobench guest: hvctl's modes against QEMU and the host's own limit.")

    @Option(
        help: ArgumentHelp(
            "Workloads: randread, randwrite (writes the pattern back), randrw (half each); net-rr (ICMP echo "
                + "round trips to a TAP's host end), net-stream (UDP frames to it); redirect (QD1 reads on vCPU 0 "
                + "whose interrupts either of 2 vCPUs may take while vCPU 1 halts, then spins; --requests per phase).",
            valueName: "list"))
    var workload = "randread"

    @Option(help: ArgumentHelp("Request sizes: multiples of 4k from 4k to 128k, e.g. 4k,64k.", valueName: "list"))
    var bs = "4k"

    @Option(help: ArgumentHelp("Queue depths, e.g. 1,16,64 (1 to 64).", valueName: "list"))
    var qd = "1,16"

    @Flag(
        help: ArgumentHelp(
            "The guest asks for a completion interrupt per request, as an interrupt-driven driver does (it still polls "
                + "its used ring; its CPU drops the interrupts), so the VMM's interrupt path is measured. With "
                + "redirect: each read waits for its completion's interrupt."))
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
        help: ArgumentHelp(
            "Requests per run (each run also verifies every block it reads); with --duration, a cap. Default 200000.",
            valueName: "n"))
    var requests: UInt64?

    @Option(help: ArgumentHelp("Seconds per run instead of a number of requests (up to 3600).", valueName: "seconds"))
    var duration: Double?

    @Option(help: ArgumentHelp("The iobench guest (default: next to hvctl, or guest-images/out).", valueName: "path"))
    var guest: String?

    @OptionGroup var targetOptions: BenchTargetOptions

    var sideCores: Int { targetOptions.sideCores }

    func validate() throws {
        _ = try coalescingSettings()
        _ = try BenchWorkload.parse(workload)
        _ = try BenchBlockSize.parse(bs)
        _ = try queueDepths()
        if let requests, !(1...100_000_000_000).contains(requests) {
            throw ValidationError("--requests \(requests): 1 to 100000000000")
        }
        if let duration, !(duration >= 0.001 && duration <= 3600) {
            throw ValidationError("--duration \(duration): 0.001 to 3600 seconds")
        }
        guard (1...16).contains(vms) else { throw ValidationError("--vms \(vms): 1 to 16") }
        let workloads = try BenchWorkload.parse(workload)
        if let rate {
            guard (1...10_000_000).contains(rate) else { throw ValidationError("--rate \(rate): 1 to 10000000") }
            if workloads.contains(where: { $0.isNetwork || $0 == .redirect }) {
                throw ValidationError("--rate \(rate): for the block workloads only")
            }
        }
        if workloads.contains(.redirect) {
            if let duration {
                throw ValidationError("--duration \(duration): the redirect workload makes --requests reads per phase")
            }
            if vms > 1 { throw ValidationError("--vms \(vms): the redirect workload runs one VM") }
            if targetOptions.null { throw ValidationError("--null: the redirect workload reads a pattern file") }
        }
        if vms > 1, try BenchWorkload.parse(workload).contains(where: \.isNetwork) {
            throw ValidationError(
                "--vms \(vms): the network workloads run one VM (each VM's TAP would need a subnet of its own)")
        }
        if vms > 1, let disk = targetOptions.disk,
            try BenchWorkload.parse(workload).contains(where: { $0.writePercent > 0 })
        {
            throw ValidationError(
                "--disk \(disk): --vms \(vms) with a write workload needs a disk per VM (leave --disk out: each VM "
                    + "then writes a pattern file of its own)")
        }
    }

    func queueDepths() throws -> [Int] { try BenchList.queueDepths(qd, limit: 64) }

    /// `--irq-coalesce`: true for on, false for off, in the order given.
    func coalescingSettings() throws -> [Bool] {
        let settings = try BenchList.coalescing(irqCoalesce)
        if settings.contains(false) && !irq {
            throw ValidationError(
                "--irq-coalesce \(irqCoalesce): only with --irq (without it the guest asks for no interrupts)")
        }
        return settings
    }

    /// Requests per run: `--requests`, else 200000, or with `--duration` as many as fit.
    var requestCap: UInt64 { requests ?? (duration == nil ? 200_000 : 100_000_000_000) }

    var durationMilliseconds: UInt64? { duration.map { UInt64(($0 * 1000).rounded()) } }

    func run() throws {
        let guestPath = try Self.guestFile(guest, flag: "--guest", name: "iobench.elf")
        let workloads = try BenchWorkload.parse(workload)
        let blockSizes = try BenchBlockSize.parse(bs)
        let depths = try queueDepths()
        let targets = try targetOptions.targets(coalescing: try coalescingSettings())
        let peers = try targetOptions.peers()
        let repeats = targetOptions.repeat
        let report = BenchReport(environment: .current(qemu: peers.contains("qemu")), options: options(), cells: [])
        try BenchSession.run("bench", options: targetOptions, vms: vms, report: report) { session, report in
            let loads = workloads.flatMap { workload in
                // A network workload and redirect have their own size and depth: one load, whatever --bs
                // and --qd say.
                let shapes =
                    workload.fixedShape.map { [($0.bytes, $0.qd)] }
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
                // Nor has an open loop (the host loop keeps qd in flight), nor redirect (it has no interrupts).
                for target in targets
                where (!load.workload.isNetwork || target.servesNetworks)
                    && ((load.rate == nil && load.workload != .redirect) || !target.isHost)
                {
                    var cell = BenchReport.Cell(
                        target: target.name, workload: load.workload.rawValue, blockSize: load.blockSize, qd: load.qd,
                        runs: [])
                    let label = "\(target.name) \(cell.configuration)"
                    for index in 0..<repeats {
                        if session.isInterrupted { break }
                        session.progress.show("\(label) run \(index + 1)/\(repeats)")
                        let measurement: BenchMeasurement
                        do {
                            guard let measured = try measure(target, load: load, guest: guestPath, session: session)
                            else { continue }
                            measurement = measured
                        } catch {
                            if session.isInterrupted { break }
                            throw error
                        }
                        cell.runs.append(measurement)
                        session.progress.show(
                            "\(label) run \(index + 1)/\(repeats): \(BenchTable.whole(measurement.iops)) IOPS",
                            done: true)
                    }
                    if !cell.runs.isEmpty { report.cells.append(cell) }
                    if session.isInterrupted { break cells }
                }
            }
        }
    }

    /// One run of `load` by `target`; nil where the target has nothing to run (the host loop without files).
    private func measure(_ target: BenchTarget, load: BenchLoad, guest: String, session: BenchSession) throws
        -> BenchMeasurement?
    {
        let disks = session.disks
        switch target {
        case .hvctl(let mode, let coalescing, let redirect):
            return try BenchHvctlRun.measure(
                guest: guest, disks: disks, mode: mode, coalescing: coalescing, redirect: redirect,
                sideCoreCount: sideCores, load: load,
                running: session.runningVMM, interrupted: session.interrupted)
        case .qemu(let pollMaxNanoseconds):
            let (vms, sideCores) = (self.vms, self.sideCores)
            return BenchMeasurement.combined(
                try BenchParallel.run(vms, name: "qemu") { index in
                    try BenchQEMURun.measure(
                        guest: guest, disk: disks[index], load: load, pollMaxNanoseconds: pollMaxNanoseconds,
                        index: index, vms: vms, sideCores: sideCores, running: session.runningChildren,
                        interrupted: session.interrupted)
                })
        case .host:
            let files = disks.compactMap { disk -> (String, UInt64)? in
                guard case .file(let path, let blocks) = disk else { return nil }
                return (path, blocks)
            }
            guard files.count == vms else { return nil }
            return BenchMeasurement.combined(
                try BenchParallel.run(vms, name: "host") { index in
                    try BenchHostRun.measure(disk: files[index].0, blocks: files[index].1, load: load)
                })
        }
    }

    private func options() -> BenchReport.Options {
        let targets = targetOptions
        return BenchReport.Options(
            workloads: (try? BenchWorkload.parse(workload).map(\.rawValue)) ?? [],
            blockSizes: (try? BenchBlockSize.parse(bs)) ?? [], qd: (try? queueDepths()) ?? [],
            modes: (try? targets.modes().map(\.rawValue)) ?? [], peers: (try? targets.peers()) ?? [],
            qemuPollMaxNanoseconds: (try? targets.qemuPollLimits()) ?? [], requests: requestCap,
            durationMilliseconds: durationMilliseconds, interrupts: irq,
            interruptCoalescing: ((try? coalescingSettings()) ?? []).map { $0 ? "on" : "off" }, rate: rate,
            repeat: targets.repeat, disk: targets.disk ?? (targets.null ? "null" : "pattern"),
            pinning: targets.pinning(vms: vms), vms: vms, sideCores: sideCores,
            interruptRedirection: ((try? targets.redirectSettings()) ?? []).map(\.rawValue))
    }

    /// `path` (given with `flag`), or `name` next to hvctl or in guest-images/out.
    static func guestFile(_ path: String?, flag: String, name: String) throws -> String {
        if let path {
            guard access(path, R_OK) == 0 else {
                throw ValidationError("\(flag) \(path): \(String(cString: strerror(errno)))")
            }
            return path
        }
        let directory = (executablePath() ?? "").split(separator: "/").dropLast().joined(separator: "/")
        for candidate in ["/\(directory)/\(name)", "guest-images/out/\(name)"] where access(candidate, R_OK) == 0 {
            return candidate
        }
        throw ValidationError("\(flag): no \(name) next to hvctl or in guest-images/out (run make, or give \(flag))")
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
    /// hvctl in a mode, with its side cores' interrupt coalescing on or off and its interrupt
    /// redirection setting (`--irq-redirect`; auto is hvctl's default).
    case hvctl(BenchMode, coalescing: Bool, redirect: RedirectSetting = .auto)
    /// QEMU at its iothread's default polling limit (nil) or at the one given.
    case qemu(pollMaxNanoseconds: UInt64?)
    case host

    var name: String {
        switch self {
        case .hvctl(let mode, let coalescing, let redirect):
            "hvctl-\(mode.rawValue)" + (coalescing ? "" : "-nocoalesce")
                + (redirect == .auto ? "" : "-redirect-\(redirect.rawValue)")
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
