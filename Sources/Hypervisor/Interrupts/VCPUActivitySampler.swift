import Synchronization

/// Samples each vCPU for interrupt redirection: KVM's `blocking` statistic (one pread of the
/// vCPU's binary statistics) and its thread's run-queue wait.
final class VCPUActivitySampler: Sendable {
    private let readers: [KVMStatisticsReader]
    private let blockingLocations: [Int?]
    private let runQueueWaits: Lock<[ThreadRunQueueWait?]>

    init(readers: [KVMStatisticsReader]) {
        self.readers = readers
        blockingLocations = readers.map { $0.location(of: "blocking") }
        runQueueWaits = Lock(Array(repeating: nil, count: readers.count))
    }

    /// The vCPU thread's kernel ID, once it runs.
    func setThreadID(_ threadID: Int32, vcpu: Int) {
        let wait = ThreadRunQueueWait(threadID: threadID)
        runQueueWaits.withLock { $0[vcpu] = wait }
    }

    func sample() -> [VCPUActivitySample] {
        let waits = runQueueWaits.withLock { $0 }
        return readers.indices.map { index in
            let blocking = blockingLocations[index].flatMap { try? readers[index].value(at: $0) } ?? 0
            return VCPUActivitySample(
                blocking: blocking != 0, runQueueWaitNanoseconds: waits[index]?.nanoseconds() ?? 0)
        }
    }
}
