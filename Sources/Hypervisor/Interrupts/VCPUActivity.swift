/// One observation of a vCPU: KVM's instantaneous `blocking` statistic (the vCPU is halted in
/// KVM) and its thread's cumulative run-queue wait (`/proc/.../schedstat`, field 2).
public struct VCPUActivitySample: Equatable, Sendable {
    public var blocking: Bool
    public var runQueueWaitNanoseconds: UInt64

    public init(blocking: Bool, runQueueWaitNanoseconds: UInt64) {
        self.blocking = blocking
        self.runQueueWaitNanoseconds = runQueueWaitNanoseconds
    }
}

/// Whether each vCPU is running, from samples taken every `interval`: halted means blocking in
/// this sample and the one before (a guest halts between requests for microseconds; redirect
/// only for one that stays halted), descheduled means its thread waited for a host CPU at
/// least half of the interval.
public struct VCPUActivityTracker: Sendable {
    private var previous: [VCPUActivitySample]?

    public init() {}

    public mutating func running(after samples: [VCPUActivitySample], intervalNanoseconds: UInt64) -> [Bool] {
        defer { previous = samples }
        guard let previous, previous.count == samples.count else { return samples.map { !$0.blocking } }
        return samples.indices.map { index in
            let halted = samples[index].blocking && previous[index].blocking
            let waited = samples[index].runQueueWaitNanoseconds &- previous[index].runQueueWaitNanoseconds
            let descheduled = samples[index].runQueueWaitNanoseconds >= previous[index].runQueueWaitNanoseconds
                && waited * 2 >= intervalNanoseconds
            return !halted && !descheduled
        }
    }
}
