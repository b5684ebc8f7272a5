import Glibc
import Hypervisor
import Synchronization

/// The I/O core manager (`--side-cores auto`): a thread named `iocm` that samples every active
/// side core's busy time each interval and resizes the engine as `SideCoreCountPolicy` decides.
/// `setAutomatic(false)` (a fixed count set through `hvctl iocm`) pauses it.
public final class IOCoreManager: @unchecked Sendable {
    public static let interval: UInt64 = 200_000_000

    private let engine: SideCoreEngine
    private let stopSignal: EventFD
    private let automatic = Atomic<Bool>(true)
    private var thread: HostThread?
    /// How many times it changed the count (for statistics).
    public let resizes = Counter()

    public init(engine: SideCoreEngine, policy: SideCoreCountPolicy) throws {
        self.engine = engine
        stopSignal = try EventFD()
        var policy = policy
        thread = try HostThread(name: "iocm") { [self] in run(policy: &policy) }
    }

    public var isAutomatic: Bool { automatic.load(ordering: .relaxed) }
    public func setAutomatic(_ on: Bool) { automatic.store(on, ordering: .relaxed) }

    public func stop() {
        stopSignal.signal()
        thread?.join()
        thread = nil
    }

    private func run(policy: inout SideCoreCountPolicy) {
        var last = (time: MonotonicClock.now(), busy: engine.cores.map { $0.statistics.busyNanoseconds.count })
        while true {
            var stop = pollfd(fd: stopSignal.fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&stop, 1, Int32(Self.interval / 1_000_000))
            if ready > 0 { return }
            let now = MonotonicClock.now()
            let busy = engine.cores.map { $0.statistics.busyNanoseconds.count }
            let elapsed = Double(max(1, now &- last.time))
            let active = engine.activeCount
            let shares = (0..<active).map { Double(busy[$0] &- last.busy[$0]) / elapsed }
            last = (now, busy)
            guard automatic.load(ordering: .relaxed) else { continue }
            let wanted = policy.decide(active: active, busyShares: shares)
            if wanted != active, (try? engine.resize(to: wanted)) != nil { resizes.add() }
        }
    }
}
