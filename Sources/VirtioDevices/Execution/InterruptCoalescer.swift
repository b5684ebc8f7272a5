/// How far a queue may hold back its completion interrupt (`--irq-coalesce on`).
public struct InterruptCoalescingPolicy: Equatable, Sendable {
    /// Longest a completion may wait for its interrupt, in nanoseconds.
    public var maxDelay: UInt64
    /// Most completions one interrupt may cover.
    public var maxCount: Int

    public init(maxDelay: UInt64 = 64_000, maxCount: Int = 32) {
        self.maxDelay = maxDelay
        self.maxCount = maxCount
    }
}

/// Adaptive interrupt coalescing for one queue (Dong et al., CLUSTER 2011), without a clock of
/// its own so tests can drive it.
///
/// The queue's completion rate (a moving average of the gap between completions) sets how many
/// completions to gather: as many as arrive within `maxDelay`, so a slow queue gets an interrupt per
/// completion (no added latency) and a fast one one per batch. A held completion never waits longer
/// than `maxDelay`, and never at all once nothing more is expected: the last completion before the
/// queue goes idle is signalled at once. Whether the driver wants the interrupt (used_event,
/// NO_INTERRUPT) is still asked of the virtqueue when it is raised.
public struct InterruptCoalescer: Equatable {
    public let policy: InterruptCoalescingPolicy
    /// Completions published since the last interrupt.
    public private(set) var pending = 0
    private var oldestPendingAt: UInt64 = 0
    private var lastCompletionAt: UInt64?
    /// Moving average of the gap between completions, in nanoseconds (7/8 old, 1/8 new).
    public private(set) var averageGap: UInt64

    public init(policy: InterruptCoalescingPolicy) {
        self.policy = policy
        averageGap = policy.maxDelay
    }

    /// Completions the current rate brings within `maxDelay`, at least 1.
    public var threshold: Int {
        guard averageGap > 0 else { return policy.maxCount }
        return Int(max(1, min(UInt64(policy.maxCount), policy.maxDelay / averageGap)))
    }

    /// `count` completions were just published; `moreExpected` says requests are still in flight
    /// (or waiting in the ring). Returns true when the interrupt should be raised now.
    public mutating func completed(_ count: Int, now: UInt64, moreExpected: Bool) -> Bool {
        guard count > 0 else { return due(now: now, moreExpected: moreExpected) }
        if let last = lastCompletionAt {
            let gap = (now &- last) / UInt64(count)
            averageGap = averageGap - averageGap / 8 + gap / 8
        }
        lastCompletionAt = now
        if pending == 0 { oldestPendingAt = now }
        pending += count
        return due(now: now, moreExpected: moreExpected)
    }

    /// Whether held completions must be signalled now (also asked on polls that completed nothing).
    public mutating func due(now: UInt64, moreExpected: Bool) -> Bool {
        guard pending > 0 else { return false }
        if !moreExpected || pending >= threshold || now &- oldestPendingAt >= policy.maxDelay {
            pending = 0
            return true
        }
        return false
    }

    /// Signals whatever is held, e.g. before the queue sleeps. Returns true when something was.
    public mutating func flush() -> Bool {
        defer { pending = 0 }
        return pending > 0
    }
}
