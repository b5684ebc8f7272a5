import ArgumentParser
import VMM

/// What `hvctl bench` and `hvctl bench fio` share: the targets measured (hvctl's modes, QEMU at its
/// polling limits, the host's own loop), how often, on which disk, and where the record and plot go.
struct BenchTargetOptions: ParsableArguments {
    @Option(help: ArgumentHelp("hvctl's I/O modes to measure: poll, hybrid, notify.", valueName: "list"))
    var mode = "poll,hybrid"

    @Option(
        name: .customLong("irq-redirect"),
        help: ArgumentHelp(
            "hvctl's interrupt redirection settings to measure (hvctl run --irq-redirect): auto (its default), on, "
                + "off, or a list.", valueName: "list"))
    var irqRedirect = "auto"

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

    @Option(help: "Runs per cell; the table shows their median and spread.")
    var `repeat` = 3

    @Option(
        help: ArgumentHelp(
            "The file to read (its 4 KiB blocks must start with their sector number; write workloads write "
                + "that pattern); default: a 64 MiB pattern file created and removed.", valueName: "file"))
    var disk: String?

    @Flag(help: "Read the null backend instead of a file (the I/O path alone; nothing to verify, no host peer).")
    var null = false

    @Option(help: ArgumentHelp("Write every figure and the environment as JSON to this file.", valueName: "file"))
    var json: String?

    @Option(
        help: ArgumentHelp(
            "Draw IOPS by queue depth and every configuration's latency distribution as SVG to this file.",
            valueName: "file.svg"))
    var plot: String?

    func validate() throws {
        _ = try qemuPollLimits()
        _ = try redirectSettings()
        _ = try modes()
        _ = try peers()
        guard (1...100).contains(self.repeat) else { throw ValidationError("--repeat \(self.repeat): 1 to 100") }
        if null && disk != nil { throw ValidationError("--null: not with --disk") }
        guard (1...64).contains(sideCores) else { throw ValidationError("--side-cores \(sideCores): 1 to 64") }
    }

    func modes() throws -> [BenchMode] {
        try mode.split(separator: ",", omittingEmptySubsequences: false).map {
            guard let mode = BenchMode(rawValue: String($0)) else {
                throw ValidationError("--mode \(mode): '\($0)' is not poll, hybrid or notify")
            }
            return mode
        }
    }

    func redirectSettings() throws -> [RedirectSetting] {
        try irqRedirect.split(separator: ",", omittingEmptySubsequences: false).map {
            guard let setting = RedirectSetting(rawValue: String($0)) else {
                throw ValidationError("--irq-redirect \(irqRedirect): '\($0)' is not auto, on or off")
            }
            return setting
        }
    }

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

    /// hvctl in each mode (with each coalescing and redirection setting), QEMU at its default and
    /// each polling limit, and the host loop (not for the null backend), in that order.
    func targets(coalescing: [Bool]) throws -> [BenchTarget] {
        let redirects = try redirectSettings()
        var targets = try modes().flatMap { mode in
            // Notify mode has no coalescing to turn off: the side cores do it.
            (mode == .notify ? [true] : coalescing).flatMap { coalescing in
                redirects.map { BenchTarget.hvctl(mode, coalescing: coalescing, redirect: $0) }
            }
        }
        let peers = try peers()
        if peers.contains("qemu") {
            targets.append(.qemu(pollMaxNanoseconds: nil))
            targets += try qemuPollLimits().map { .qemu(pollMaxNanoseconds: $0) }
        }
        if peers.contains("host") && !null { targets.append(.host) }
        return targets
    }

    /// The placement both peers share, in words for the JSON record.
    func pinning(vms: Int) -> String {
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
}
