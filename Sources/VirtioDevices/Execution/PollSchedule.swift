/// The polling policy of one side core, without threads or clocks of its own so that tests can
/// drive it: which handlers are polled, with what budget, and when a handler goes to sleep.
///
/// Each round polls every awake handler once with the same budget (round robin), so a busy queue
/// cannot starve the others and a small request waits at most one round of bounded work. In
/// hybrid mode a handler that found no work for its adaptive window has its kicks re-enabled, is
/// re-checked (a chain published meanwhile keeps it awake) and sleeps until its wake descriptors fire.
public final class PollSchedule: @unchecked Sendable {
    // @unchecked: only its side core's thread touches it once built (SideCore's mailbox is the
    // way in for other threads); so no two accesses to its state overlap, and the runtime's
    // exclusivity checks on every round are left out (@exclusivity(unchecked)).
    public enum Mode: String, Sendable { case poll, hybrid }

    /// One handler as this schedule sees it; the counters feed the side core's statistics.
    public struct Entry {
        public let handler: QueueHandler
        public internal(set) var awake = true
        public internal(set) var window: AdaptivePollWindow
        var lastWorkAt: UInt64
        var sleptAt: UInt64 = 0
        /// Whether its poll in the current round found work (hybrid's window pass reads it).
        var foundWork = false
        /// What to watch while asleep, and which of it are kicks, taken when it fell asleep.
        public internal(set) var wakeDescriptors: [Int32] = []
        public internal(set) var kickDescriptors: [Int32] = []
        public internal(set) var polls: UInt64 = 0
        public internal(set) var productivePolls: UInt64 = 0
        public internal(set) var sleeps: UInt64 = 0
    }

    public let mode: Mode
    public let budget: Int
    public let pollMaxNanoseconds: UInt64
    /// How far kicks may grow each queue's window bound (`AdaptivePollWindow.ceiling`); nil: fixed.
    public let pollWindowCeiling: UInt64?
    @exclusivity(unchecked) public private(set) var entries: [Entry] = []
    /// Handlers that found work in the last round: with several, another core could split the round.
    @exclusivity(unchecked) public private(set) var lastRoundProductiveHandlers = 0

    public init(mode: Mode, budget: Int, pollMaxNanoseconds: UInt64, pollWindowCeiling: UInt64? = nil) {
        self.mode = mode
        self.budget = budget
        self.pollMaxNanoseconds = pollMaxNanoseconds
        self.pollWindowCeiling = pollWindowCeiling
    }

    public var awakeCount: Int { entries.reduce(0) { $0 + ($1.awake ? 1 : 0) } }
    public var sleepingCount: Int { entries.count - awakeCount }

    /// Starts polling `handler`: its kicks are turned off, since this core looks at the ring anyway.
    public func add(_ handler: QueueHandler, now: UInt64) {
        handler.setGuestNotifications(enabled: false)
        entries.append(
            Entry(
                handler: handler, window: AdaptivePollWindow(maximum: pollMaxNanoseconds, ceiling: pollWindowCeiling),
                lastWorkAt: now))
    }

    /// Stops polling `handler` and gives it its kicks back (whoever takes it next decides again).
    public func remove(_ handler: QueueHandler) {
        guard let index = entries.firstIndex(where: { $0.handler === handler }) else { return }
        handler.setGuestNotifications(enabled: true)
        // Counts the kicks that arrived while it was polled (in poll mode nothing else reads them).
        _ = handler.prepareToSleep()
        entries.remove(at: index)
    }

    /// Polls every awake handler once; returns the work done. In hybrid mode `now` is then read
    /// once, after every poll, for the windows (a read per handler and round, with the side core's
    /// own two, was a tenth of side0's time in net-rr); poll mode never reads it.
    public func round(now: () -> UInt64) -> Int {
        var total = 0
        lastRoundProductiveHandlers = 0
        for index in entries.indices where entries[index].awake {
            let done = entries[index].handler.poll(budget: budget)
            entries[index].polls += 1
            entries[index].foundWork = done > 0
            if done > 0 {
                total += done
                lastRoundProductiveHandlers += 1
                entries[index].productivePolls += 1
            }
        }
        guard mode == .hybrid, !entries.isEmpty else { return total }
        let time = now()
        for index in entries.indices where entries[index].awake {
            let handler = entries[index].handler
            if entries[index].foundWork {
                entries[index].lastWorkAt = time
            } else if time &- entries[index].lastWorkAt >= entries[index].window.current {
                // Kicks back on first, then one more look: a chain published in between has no kick.
                handler.setGuestNotifications(enabled: true)
                if handler.prepareToSleep() {
                    handler.setGuestNotifications(enabled: false)
                    entries[index].lastWorkAt = time
                } else {
                    entries[index].awake = false
                    entries[index].sleptAt = time
                    entries[index].sleeps += 1
                    entries[index].wakeDescriptors = handler.wakeDescriptors
                    entries[index].kickDescriptors = handler.kickDescriptors
                }
            }
        }
        return total
    }

    /// Whether an awake handler's requests wait on kernel threads (`QueueHandler.awaitsKernelThreads`).
    public var awaitsKernelThreads: Bool {
        entries.contains { $0.awake && $0.handler.awaitsKernelThreads }
    }

    /// A sleeping handler's descriptor fired (`byKick`: one of its kick descriptors): poll it again,
    /// kicks off, and adapt its window.
    public func wake(at index: Int, now: UInt64, byKick: Bool = true) {
        guard entries.indices.contains(index), !entries[index].awake else { return }
        entries[index].window.queueWoke(afterSleeping: now &- entries[index].sleptAt, byKick: byKick)
        entries[index].awake = true
        entries[index].lastWorkAt = now
        entries[index].handler.setGuestNotifications(enabled: false)
    }
}
