import Hypervisor

/// Counters for one queue, exported in `--stats-json`.
public final class QueueStatistics: Sendable {
    public let requests = Counter()
    public let bytes = Counter()
    public let notifications = Counter()
    public let interrupts = Counter()
    /// Interrupts that went to a vCPU the VMM chose instead of the guest's (redirection).
    public let redirected = Counter()
    /// Completions whose interrupt was held back to be covered by a later one (coalescing).
    public let coalesced = Counter()
    /// Polls that returned completions to the used ring: without coalescing each one that the
    /// driver wants signalled is an interrupt, so interrupts below this show what coalescing saved.
    public let completionBatches = Counter()
    public let errors = Counter()
    /// FLUSH requests passed to fdatasync (block devices only).
    public let flushes = Counter()
    /// Each request's time from being taken off the available ring to its used-ring entry, as the
    /// queue's poll rounds see it (block queues).
    public let latency = LatencyBuckets()
    public init() {}
}
