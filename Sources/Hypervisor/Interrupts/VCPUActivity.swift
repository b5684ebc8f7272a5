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

/// Whether each vCPU is running, from successive samples. A sample says "not running" when the
/// vCPU is blocking (halted; unless `countsHalts` is false) or its thread waited for a host CPU
/// for at least half the time since the previous sample (descheduled: the kernel reports a wait
/// once it is over, so this marks a vCPU that keeps losing its CPU to others). The answer changes
/// only when two samples in a row agree: a guest halts between requests for microseconds, and a
/// route that followed every sample would flap.
public struct VCPUActivityTracker: Sendable {
    private var previous: [VCPUActivitySample]?
    private var previousVerdicts: [Bool] = []
    private var state: [Bool] = []
    private let countsHalts: Bool

    public init(countsHalts: Bool = true) {
        self.countsHalts = countsHalts
    }

    /// `elapsedNanoseconds`: the time since the previous samples were taken.
    public mutating func running(after samples: [VCPUActivitySample], elapsedNanoseconds: UInt64) -> [Bool] {
        defer { previous = samples }
        guard let previous, previous.count == samples.count else {
            state = Array(repeating: true, count: samples.count)
            previousVerdicts = samples.map { !(countsHalts && $0.blocking) }
            return state
        }
        let verdicts = samples.indices.map { index in
            let waited =
                samples[index].runQueueWaitNanoseconds >= previous[index].runQueueWaitNanoseconds
                ? samples[index].runQueueWaitNanoseconds - previous[index].runQueueWaitNanoseconds : 0
            return !(countsHalts && samples[index].blocking) && waited * 2 < elapsedNanoseconds
        }
        for index in samples.indices where verdicts[index] == previousVerdicts[index] { state[index] = verdicts[index] }
        previousVerdicts = verdicts
        return state
    }
}
