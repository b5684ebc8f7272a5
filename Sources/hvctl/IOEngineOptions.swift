import ArgumentParser
import VirtioDevices

/// `--io-mode notify|poll|hybrid`.
enum IOMode: String, ExpressibleByArgument, CaseIterable {
    case notify, poll, hybrid
}

/// An on|off option value.
enum Switch: String, ExpressibleByArgument, CaseIterable {
    case on, off
}

/// The options that choose how device queues are served, and the engine they build.
struct IOEngineOptions: ParsableArguments {
    static let defaultSideCores = 1
    static let defaultPollMaxMicroseconds = 256

    @Option(name: .customLong("io-mode"), help: ArgumentHelp(
        "notify: a thread per queue, woken by the guest's kicks. poll: side cores poll the queues with kicks off. hybrid: poll, and let idle queues sleep until a kick.",
        valueName: "mode"))
    var ioMode: IOMode = .hybrid

    @Option(name: .customLong("side-cores"), help: ArgumentHelp(
        "Side-core threads (side0, ...) for poll and hybrid modes, pinned to the last host CPUs (default \(IOEngineOptions.defaultSideCores)).",
        valueName: "n"))
    var sideCores: Int?

    @Option(name: .customLong("poll-max-us"), help: ArgumentHelp(
        "Hybrid mode: the longest a queue is polled without work before it sleeps, in µs (default \(IOEngineOptions.defaultPollMaxMicroseconds)).",
        valueName: "µs"))
    var pollMaxMicroseconds: Int?

    @Option(name: .customLong("irq-coalesce"), help: ArgumentHelp(
        "Poll and hybrid modes: adaptive interrupt coalescing per queue, on or off (default on).", valueName: "on|off"))
    var interruptCoalescing: Switch?

    func validate() throws {
        if interruptCoalescing != nil && ioMode == .notify {
            throw ValidationError("--irq-coalesce: needs --io-mode poll or hybrid")
        }
        if let sideCores {
            guard ioMode != .notify else { throw ValidationError("--side-cores: needs --io-mode poll or hybrid") }
            guard (1...64).contains(sideCores) else { throw ValidationError("--side-cores \(sideCores): must be 1 to 64") }
        }
        if let pollMaxMicroseconds {
            guard ioMode == .hybrid else { throw ValidationError("--poll-max-us: needs --io-mode hybrid") }
            guard (0...1_000_000).contains(pollMaxMicroseconds) else {
                throw ValidationError("--poll-max-us \(pollMaxMicroseconds): must be 0 to 1000000")
            }
        }
    }

    /// The engine for these options; side cores start running (idle) at once.
    func makeEngine() throws -> (engine: QueueEngine, sideCores: SideCoreEngine?) {
        let mode: PollSchedule.Mode
        switch ioMode {
        case .notify: return (NotifyEngine(), nil)
        case .poll: mode = .poll
        case .hybrid: mode = .hybrid
        }
        var configuration = SideCoreConfiguration(
            mode: mode, count: sideCores ?? Self.defaultSideCores,
            pollMaxNanoseconds: UInt64(pollMaxMicroseconds ?? Self.defaultPollMaxMicroseconds) * 1_000)
        if interruptCoalescing == .off { configuration.coalescing = nil }
        let engine = try SideCoreEngine(configuration: configuration)
        return (engine, engine)
    }
}
