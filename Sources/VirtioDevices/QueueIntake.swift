/// How every queue handler takes chains from the guest, so each gets the same rules: a ring the
/// driver broke (a descriptor loop, an available index that jumps) stops the queue and reports
/// it once, which puts the device in DEVICE_NEEDS_RESET; a chain the queue could not walk is
/// given back to the driver empty. Both count as errors in the queue's statistics.
struct QueueIntake {
    enum Next {
        /// A chain to serve.
        case chain(DescriptorChain)
        /// A malformed chain, already returned to the used ring with length 0.
        case rejected
        /// Nothing waits, or the ring is broken.
        case none
    }

    let context: QueueContext
    private let statistics: QueueStatistics
    /// Names the queue in the report, e.g. "blk0 queue 1".
    private let label: String
    private let onBroken: (String) -> Void
    private(set) var isBroken = false

    init(context: QueueContext, statistics: QueueStatistics, label: String, onBroken: @escaping (String) -> Void) {
        self.context = context
        self.statistics = statistics
        self.label = label
        self.onBroken = onBroken
    }

    mutating func next() -> Next {
        guard !isBroken else { return .none }
        let popped: DescriptorChainResult?
        do {
            popped = try context.queue.popAvailable()
        } catch {
            isBroken = true
            statistics.add(.errors)
            onBroken("\(label): \(error)")
            return .none
        }
        switch popped {
        case nil:
            return .none
        case .chain(let chain):
            return .chain(chain)
        case .failure(let head, _):
            statistics.add(.errors)
            context.queue.addUsed(head: head, length: 0)
            return .rejected
        }
    }
}
