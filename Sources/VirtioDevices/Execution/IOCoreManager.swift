import Glibc
import Hypervisor
import Synchronization

/// The I/O core manager (`--side-cores auto`): a thread named `iocm` that samples every active
/// side core's busy time and busy rounds and the engine's request count each interval and resizes
/// the engine as `SideCoreCountPolicy` decides.
/// `setAutomatic(false)` (a fixed count set through `hvctl iocm`) pauses it.
public final class IOCoreManager: Sendable {
    public static let interval: UInt64 = 200_000_000

    private let engine: SideCoreEngine
    private let stopSignal: EventFD
    private let automatic = Atomic<Bool>(true)
    private let thread = WorkerThread()
    /// How many times it changed the count (for statistics).
    public let resizes = Counter()

    /// What one decision did, for the log.
    public struct Resize: Sendable {
        public let from: Int
        public let to: Int
        public let sample: SideCoreCountPolicy.Sample
        public let moves: Int
        public var error: String? = nil
    }
    /// Called on the iocm thread after each resize it makes (or fails to make).
    private let onResize: (@Sendable (Resize) -> Void)?

    public init(engine: SideCoreEngine, policy: SideCoreCountPolicy, onResize: (@Sendable (Resize) -> Void)? = nil)
        throws
    {
        self.engine = engine
        self.onResize = onResize
        stopSignal = try EventFD()
        try thread.start(name: "iocm") { [self] in
            var policy = policy
            run(policy: &policy)
        }
    }

    public var isAutomatic: Bool { automatic.load(ordering: .relaxed) }
    public func setAutomatic(_ on: Bool) { automatic.store(on, ordering: .relaxed) }

    public func stop() {
        stopSignal.signal()
        thread.join()
    }

    private func run(policy: inout SideCoreCountPolicy) {
        var last = (
            time: MonotonicClock.now(), busy: engine.cores.map { $0.statistics.busyNanoseconds.count },
            rounds: engine.cores.map { $0.statistics.busyRounds.count },
            productivePolls: engine.cores.map { $0.statistics.productiveHandlerPolls.count },
            requests: engine.requestsHandled
        )
        while true {
            var stop = pollfd(fd: stopSignal.fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&stop, 1, Int32(Self.interval / 1_000_000))
            if ready > 0 { return }
            let now = MonotonicClock.now()
            let busy = engine.cores.map { $0.statistics.busyNanoseconds.count }
            let rounds = engine.cores.map { $0.statistics.busyRounds.count }
            let productivePolls = engine.cores.map { $0.statistics.productiveHandlerPolls.count }
            let requests = engine.requestsHandled
            let elapsed = Double(max(1, now &- last.time))
            let active = engine.activeCount
            // Per active core: busy rounds this interval (at least 1, so an idle core gives 0s).
            let busyRounds = (0..<active).map { Double(max(1, rounds[$0] &- last.rounds[$0])) }
            let sample = SideCoreCountPolicy.Sample(
                busyShares: (0..<active).map { Double(busy[$0] &- last.busy[$0]) / elapsed },
                requestRate: Double(requests &- last.requests) * 1e9 / elapsed,
                pickupDelays: (0..<active).map { Double(busy[$0] &- last.busy[$0]) / busyRounds[$0] / 1e9 },
                handlersPerBusyRound: (0..<active).map {
                    Double(productivePolls[$0] &- last.productivePolls[$0]) / busyRounds[$0]
                })
            last = (now, busy, rounds, productivePolls, requests)
            guard automatic.load(ordering: .relaxed) else { continue }
            let wanted = policy.decide(active: active, sample: sample)
            guard wanted != active else { continue }
            do {
                let moves = try engine.resize(to: wanted)
                resizes.add()
                onResize?(Resize(from: active, to: wanted, sample: sample, moves: moves))
            } catch {
                onResize?(Resize(from: active, to: engine.activeCount, sample: sample, moves: 0, error: "\(error)"))
            }
        }
    }
}
