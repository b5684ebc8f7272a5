import CKVM
import Glibc
import Hypervisor
import Synchronization

/// Counters of one side core, for `--stats-json`.
public final class SideCoreStatistics: Sendable {
    /// Time spent in rounds that found work, and in rounds that found none (polling cost). A
    /// round's time runs from the end of the one before (the loop's bookkeeping between them
    /// included); time given away by a yield or spent asleep is in neither.
    public let busyNanoseconds = Counter()
    public let idleNanoseconds = Counter()
    /// Rounds that found work (busyNanoseconds / busyRounds: their mean length, the pickup delay).
    public let busyRounds = Counter()
    /// Handlers that found work, summed over those rounds (over busyRounds: how many share a round).
    public let productiveHandlerPolls = Counter()
    /// Times the core blocked because every queue it serves was asleep.
    public let sleeps = Counter()
    public init() {}

    /// Counts one round. The side core's loop counts through this rather than through each
    /// counter, for QueueStatistics.add's reason (a retain and release around each add).
    @inline(__always) func addRound(nanoseconds: UInt64, productiveHandlers: Int) {
        if productiveHandlers > 0 {
            busyNanoseconds.add(nanoseconds)
            busyRounds.add()
            productiveHandlerPolls.add(UInt64(clamping: productiveHandlers))
        } else {
            idleNanoseconds.add(nanoseconds)
        }
    }
}

/// One side core: a thread named `side<N>`, pinned to a host CPU, that runs a `PollSchedule` over
/// queue handlers of any device of any VM in this process. Handlers come and go through a mailbox
/// the thread reads between rounds, so the schedule itself is only ever touched by the thread.
public final class SideCore: Sendable {
    private enum Change {
        case add(DetachableHandler)
        case remove(DetachableHandler)
    }

    private struct Mailbox {
        var changes: [Change] = []
        var stopped = false
        /// What each handler given to this core is wrapped in, until it is removed.
        var attached: [ObjectIdentifier: DetachableHandler] = [:]
    }

    public let name: String
    public let cpu: Int32?
    public let statistics = SideCoreStatistics()
    private let schedule: PollSchedule
    private let mailbox = Lock(Mailbox())
    /// Set after every mailbox change, so a round finds an empty mailbox without taking its lock.
    private let mailboxChanged = Atomic<Bool>(false)
    private let wakeSignal: EventFD
    private let thread = WorkerThread()
    public typealias HandlerCounters = (name: String, polls: UInt64, productivePolls: UInt64, sleeps: UInt64)
    /// Per-handler counters for readers on other threads: handlers served now (as of a recent
    /// round), and the totals of removed ones by name (a driver that resets its device over and
    /// over adds to the same entry, not to a growing list).
    private let published = Lock<(current: [HandlerCounters], removed: [String: HandlerCounters])>(([], [:]))

    public init(
        name: String, cpu: Int32?, mode: PollSchedule.Mode, budget: Int, pollMaxNanoseconds: UInt64,
        pollWindowCeiling: UInt64? = nil
    ) throws {
        self.name = name
        self.cpu = cpu
        schedule = PollSchedule(
            mode: mode, budget: budget, pollMaxNanoseconds: pollMaxNanoseconds, pollWindowCeiling: pollWindowCeiling)
        wakeSignal = try EventFD(nonBlocking: true)
        try thread.start(name: name) { [self] in run() }
    }

    public func add(_ handler: QueueHandler) {
        let wrapped = DetachableHandler(handler)
        mailbox.withLock {
            $0.attached[ObjectIdentifier(handler)] = wrapped
            $0.changes.append(.add(wrapped))
        }
        mailboxChanged.store(true, ordering: .releasing)
        wakeSignal.signal()
    }

    /// Returns once the core has let go of `handler`: it will not be polled again. Waits only
    /// for a call into this handler that is in progress (bounded work), never for the round.
    public func remove(_ handler: QueueHandler) {
        let wrapped = mailbox.withLock { mailbox -> DetachableHandler? in
            guard let wrapped = mailbox.attached.removeValue(forKey: ObjectIdentifier(handler)) else { return nil }
            if !mailbox.stopped { mailbox.changes.append(.remove(wrapped)) }
            return wrapped
        }
        guard let wrapped else { return }
        wrapped.detach()
        // The core drops the detached entry from its schedule at its next round.
        mailboxChanged.store(true, ordering: .releasing)
        wakeSignal.signal()
    }

    /// Stops the thread; handlers still attached get their kicks back.
    public func stop() {
        mailbox.withLock { $0.stopped = true }
        mailboxChanged.store(true, ordering: .releasing)
        wakeSignal.signal()
        thread.join()
    }

    /// CPU time the core's thread has used, in nanoseconds (nil once it has stopped).
    public var cpuNanoseconds: UInt64? {
        // Inside the slot: the thread cannot be joined (its handle freed) while its clock is read.
        thread.withRunningThread { thread -> UInt64? in
            var clock = clockid_t()
            var time = timespec()
            guard pthread_getcpuclockid(thread.handle, &clock) == 0, clock_gettime(clock, &time) == 0 else {
                return nil
            }
            return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
        } ?? nil
    }

    /// Polls, polls that found work, and sleeps of every handler this core has served.
    public var handlerCounters: [HandlerCounters] {
        published.withLock { published in
            var totals = published.removed
            for counters in published.current { Self.accumulate(counters, into: &totals) }
            return totals.values.sorted { $0.name < $1.name }
        }
    }

    private func run() {
        if let cpu { _ = ckvm_pin_thread(cpu) }
        var rounds: UInt64 = 0
        var idleRounds: UInt64 = 0
        // A round's time runs from the previous round's end to its own: one clock read a round.
        var previousEnd = MonotonicClock.now()
        while applyChanges() {
            // Hybrid's schedule reads the clock after its polls: that reading ends the round too.
            var readByRound: UInt64?
            let work = schedule.round {
                let now = MonotonicClock.now()
                readByRound = now
                return now
            }
            let end = readByRound ?? MonotonicClock.now()
            let elapsed = end &- previousEnd
            previousEnd = end
            statistics.addRound(nanoseconds: elapsed, productiveHandlers: schedule.lastRoundProductiveHandlers)
            if work == 0 {
                idleRounds &+= 1
                // An idle poller gives its CPU to whatever else waits there: at once when requests
                // wait on io-wq workers (they inherit this pinned CPU), and every 64th idle round
                // for the CPU's own kernel threads (writeback, per-CPU work), which would otherwise
                // wait for the scheduler's tick. Spinning beside them held buffered 4 KiB writes
                // to 19k IOPS at QD8 against 58k (hvctl bench --workload randwrite).
                if schedule.awaitsKernelThreads || idleRounds % 64 == 0 {
                    sched_yield()
                    previousEnd = MonotonicClock.now()  // whatever ran meanwhile is neither busy nor idle time
                }
            }
            rounds &+= 1
            if rounds % 1024 == 0 { publishCounters() }
            if schedule.awakeCount == 0 {
                publishCounters()
                statistics.sleeps.add()
                sleep(timeout: -1)
                previousEnd = MonotonicClock.now()
            } else if schedule.sleepingCount > 0 && rounds % 64 == 0 {
                // Sleeping queues are checked without blocking now and then while others are polled.
                sleep(timeout: 0)
            }
        }
        publishCounters()
        for entry in schedule.entries { schedule.remove(entry.handler) }
    }

    /// Applies queued adds and removes; false once the core is told to stop.
    private func applyChanges() -> Bool {
        // Cleared before the lock is taken: a change made after this is seen by the next round.
        guard mailboxChanged.load(ordering: .relaxed), mailboxChanged.exchange(false, ordering: .acquiring) else {
            return true
        }
        let (changes, stopped) = mailbox.withLock { mailbox -> ([Change], Bool) in
            defer { mailbox.changes = [] }
            return (mailbox.changes, mailbox.stopped)
        }
        for change in changes {
            switch change {
            case .add(let handler):
                schedule.add(handler, now: MonotonicClock.now())
            case .remove(let handler):
                if let entry = schedule.entries.first(where: { $0.handler === handler }) {
                    published.withLock { Self.accumulate(Self.counters(entry), into: &$0.removed) }
                }
                schedule.remove(handler)
            }
        }
        if !changes.isEmpty { publishCounters() }
        return !stopped
    }

    private static func accumulate(_ counters: HandlerCounters, into totals: inout [String: HandlerCounters]) {
        let previous = totals[counters.name] ?? (counters.name, 0, 0, 0)
        totals[counters.name] = (
            counters.name, previous.polls + counters.polls,
            previous.productivePolls + counters.productivePolls, previous.sleeps + counters.sleeps
        )
    }

    private static func counters(_ entry: PollSchedule.Entry) -> HandlerCounters {
        (entry.handler.name, entry.polls, entry.productivePolls, entry.sleeps)
    }

    private func publishCounters() {
        let counters = schedule.entries.map(Self.counters)
        published.withLock { $0.current = counters }
    }

    /// Waits (or with timeout 0 just looks) for a sleeping handler's descriptors or the mailbox.
    private func sleep(timeout: Int32) {
        var fds = [pollfd(fd: wakeSignal.fd, events: Int16(POLLIN), revents: 0)]
        var owners = [-1]
        var kicks = [false]
        for (index, entry) in schedule.entries.enumerated() where !entry.awake {
            for fd in entry.wakeDescriptors {
                fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
                owners.append(index)
                kicks.append(entry.kickDescriptors.contains(fd))
            }
        }
        guard poll(&fds, nfds_t(fds.count), timeout) > 0 else { return }
        if fds[0].revents != 0 { _ = wakeSignal.drain() }
        let now = MonotonicClock.now()
        // Kicks first: a handler woken by a kick and another descriptor at once counts as kicked
        // (waking an awake handler again does nothing).
        for byKick in [true, false] {
            for position in 1..<fds.count where fds[position].revents != 0 && kicks[position] == byKick {
                schedule.wake(at: owners[position], now: now, byKick: byKick)
            }
        }
    }
}
