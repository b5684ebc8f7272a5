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

    /// Records one request's latency. Handlers call this rather than `latency.record`: reached
    /// through two objects, the histogram was retained and released per request, and that atomic
    /// pair cost a fifth of a side core at 1.3M IOPS (perf record on `hvctl bench --null --qd 64`).
    public func recordLatency(nanoseconds: UInt64) { latency.record(nanoseconds: nanoseconds) }
}
