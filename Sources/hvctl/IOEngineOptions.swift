import ArgumentParser
import Glibc
import Hypervisor
import VirtioDevices

/// The options that choose how device queues are served, and their checks against each other
/// (what they build: IOEngineOptions+IOConfiguration.swift).
struct IOEngineOptions: ParsableArguments {
    static let defaultSideCores = 1
    static let defaultPollMaxMicroseconds = 256
    /// Without --poll-max-us the bound sizes itself between the default and this
    /// (AdaptivePollWindow): up to 64 times the default, about the 10 ms the nested rig needed.
    static let selfSizedPollWindowCeilingMicroseconds = 64 * defaultPollMaxMicroseconds
    static let defaultPickupDelayMicroseconds = 100

    @Option(
        name: .customLong("io-mode"),
        help: ArgumentHelp(
            """
            notify: a thread per queue, woken by the guest's kicks. poll: side cores poll the queues with kicks off. \
            hybrid: poll, and let idle queues sleep until a kick.
            """,
            valueName: "mode"))
    var ioMode: IOMode = .hybrid

    @Option(
        name: .customLong("side-cores"),
        help: ArgumentHelp(
            """
            Side-core threads (side0, ...) for poll and hybrid modes, pinned to the last host CPUs (default \
            \(IOEngineOptions.defaultSideCores)); auto: the iocm thread sizes them between --side-cores-min and \
            --side-cores-max from their load.
            """,
            valueName: "n|auto"))
    var sideCoreCount: SideCoreCount?

    @Option(
        name: .customLong("side-cores-min"),
        help: ArgumentHelp(
            """
            With --side-cores auto: the fewest side cores (default 1); 0 lets iocm hand the queues to notify threads \
            while requests are rare.
            """,
            valueName: "n"))
    var sideCoresMin: Int?

    @Option(
        name: .customLong("side-cores-latency-us"),
        help: ArgumentHelp(
            """
            With --side-cores auto: the longest pickup delay (mean length of a side core's rounds that found work) \
            iocm tolerates before adding a core, in µs (default \(IOEngineOptions.defaultPickupDelayMicroseconds)).
            """,
            valueName: "µs"))
    var pickupDelayMicroseconds: Int?

    /// Side cores serving queues at start.
    var sideCores: Int? {
        switch sideCoreCount {
        case .fixed(let count): return count
        case .automatic: return sideCoresMin ?? 1
        case nil: return nil
        }
    }

    @Option(
        name: .customLong("poll-max-us"),
        help: ArgumentHelp(
            """
            Hybrid mode: the longest a queue is polled without work before it sleeps, in µs. Default: \
            sized by the guest's kicks, from \(IOEngineOptions.defaultPollMaxMicroseconds) up to \
            \(IOEngineOptions.selfSizedPollWindowCeilingMicroseconds) while kicks come soon after a queue \
            sleeps; a value fixes it.
            """,
            valueName: "µs"))
    var pollMaxMicroseconds: Int?

    @Option(
        name: .customLong("side-cores-max"),
        help: ArgumentHelp(
            "Side-core threads to create, for changing the count while running (hvctl iocm); default --side-cores.",
            valueName: "n"))
    var sideCoresMax: Int?

    @Option(
        name: .customLong("side-core-cpus"),
        help: ArgumentHelp(
            """
            Host CPUs of side0, side1, ... as a comma-separated list, or none to leave them unpinned (default: the \
            last CPUs).
            """,
            valueName: "list|none"))
    var sideCoreCPUs: String?

    @Option(
        name: .customLong("irq-coalesce"),
        help: ArgumentHelp(
            "Poll and hybrid modes: adaptive interrupt coalescing per queue, on or off (default on).",
            valueName: "on|off"))
    var interruptCoalescing: OnOff?

    @Option(
        name: .customLong("irq-redirect"),
        help: ArgumentHelp(
            """
            Move an interrupt that may go to any of several vCPUs to a running one. on: off halted and \
            descheduled vCPUs; auto (default): off halted ones only with posted interrupts; off.
            """,
            valueName: "on|off|auto"))
    var interruptRedirection: RedirectSetting = .auto

    /// `--side-core-cpus`: nil for the default placement, [] for unpinned, else the CPUs.
    func parsedSideCoreCPUs() throws -> [Int32]? {
        guard let sideCoreCPUs else { return nil }
        if sideCoreCPUs == "none" { return [] }
        let online = Int32(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let cpus = try sideCoreCPUs.split(separator: ",", omittingEmptySubsequences: false).map { item in
            guard let cpu = Int32(item), cpu >= 0, cpu < online else {
                throw ValidationError(
                    "--side-core-cpus \(sideCoreCPUs): '\(item)' is not an online CPU (0 to \(online - 1))")
            }
            return cpu
        }
        guard Set(cpus).count == cpus.count else {
            throw ValidationError("--side-core-cpus \(sideCoreCPUs): a CPU is given twice")
        }
        return cpus
    }

    func validate() throws {
        if sideCoreCPUs != nil {
            guard ioMode != .notify else { throw ValidationError("--side-core-cpus: needs --io-mode poll or hybrid") }
            let cpus = try parsedSideCoreCPUs() ?? []
            let threads =
                sideCoresMax
                ?? (sideCoreCount == .automatic
                    ? Self.defaultAutomaticMaximum(minimum: sideCores ?? 1) : sideCores ?? Self.defaultSideCores)
            if !cpus.isEmpty && cpus.count != threads {
                throw ValidationError(
                    "--side-core-cpus \(sideCoreCPUs ?? ""): gives \(cpus.count) CPUs for \(threads) side cores")
            }
        }
        if interruptCoalescing != nil && ioMode == .notify {
            throw ValidationError("--irq-coalesce: needs --io-mode poll or hybrid")
        }
        if case .fixed(let count) = sideCoreCount {
            guard ioMode != .notify else { throw ValidationError("--side-cores: needs --io-mode poll or hybrid") }
            guard (1...64).contains(count) else {
                throw ValidationError("--side-cores \(count): must be 1 to 64 (or auto)")
            }
        }
        if sideCoreCount == .automatic && ioMode == .notify {
            throw ValidationError("--side-cores: needs --io-mode poll or hybrid")
        }
        if let sideCoresMin {
            guard sideCoreCount == .automatic else {
                throw ValidationError("--side-cores-min: needs --side-cores auto")
            }
            guard (0...64).contains(sideCoresMin) else {
                throw ValidationError("--side-cores-min \(sideCoresMin): must be 0 to 64")
            }
        }
        if let pickupDelayMicroseconds {
            guard sideCoreCount == .automatic else {
                throw ValidationError("--side-cores-latency-us: needs --side-cores auto")
            }
            guard (1...1_000_000).contains(pickupDelayMicroseconds) else {
                throw ValidationError("--side-cores-latency-us \(pickupDelayMicroseconds): must be 1 to 1000000")
            }
        }
        if let sideCoresMax {
            guard ioMode != .notify else { throw ValidationError("--side-cores-max: needs --io-mode poll or hybrid") }
            let count = sideCores ?? Self.defaultSideCores
            guard (max(1, count)...64).contains(sideCoresMax) else {
                let minimumFlag = sideCoreCount == .automatic ? "--side-cores-min" : "--side-cores"
                throw ValidationError(
                    "--side-cores-max \(sideCoresMax): must be \(max(1, count)) (\(minimumFlag)) to 64")
            }
        }
        if let pollMaxMicroseconds {
            guard ioMode == .hybrid else { throw ValidationError("--poll-max-us: needs --io-mode hybrid") }
            guard (0...1_000_000).contains(pollMaxMicroseconds) else {
                throw ValidationError("--poll-max-us \(pollMaxMicroseconds): must be 0 to 1000000")
            }
        }
    }

    /// With --side-cores auto and no --side-cores-max: half the host's CPUs, at least the minimum and 1.
    static func defaultAutomaticMaximum(minimum: Int) -> Int {
        max(1, minimum, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) / 2)
    }
}
