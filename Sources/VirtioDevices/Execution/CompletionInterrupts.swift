import Hypervisor

/// A queue's completion interrupt: raised when the driver wants one (used_event or
/// NO_INTERRUPT), through the coalescer when the engine asks for coalescing.
struct CompletionInterrupts {
    private let context: QueueContext
    private let statistics: QueueStatistics
    private var coalescer: InterruptCoalescer?

    init(context: QueueContext, statistics: QueueStatistics) {
        self.context = context
        self.statistics = statistics
        coalescer = context.coalescing.map(InterruptCoalescer.init)
    }

    /// `count` chains (possibly 0) were returned to the used ring since the last call;
    /// `moreExpected` says requests are still in flight or waiting in the ring.
    mutating func published(_ count: Int, moreExpected: Bool) {
        // Nothing new and nothing held: no interrupt can be due. Returning before the clock read
        // matters to an idle poll (a net queue pair's two per round were 4% of side0 in net-rr).
        if count == 0 && (coalescer?.pending ?? 0) == 0 { return }
        if count > 0 { statistics.add(.completionBatches) }
        let due: Bool
        if var coalescer {
            due = coalescer.completed(count, now: MonotonicClock.now(), moreExpected: moreExpected)
            self.coalescer = coalescer
            if !due && count > 0 { statistics.add(.coalesced, UInt64(clamping: count)) }
        } else {
            due = count > 0
        }
        if due { raiseIfWanted() }
    }

    /// Signals held completions at once: the queue is about to sleep or stop.
    mutating func flush() {
        guard coalescer?.flush() == true else { return }
        raiseIfWanted()
    }

    private func raiseIfWanted() {
        if context.queue.needsInterrupt() {
            statistics.add(.interrupts)
            if context.interrupt.raise() == .redirected { statistics.add(.redirected) }
        }
    }
}
