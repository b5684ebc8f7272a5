import Glibc
import Hypervisor

/// Serves the virtio-net control queue: VIRTIO_NET_CTRL_MQ's VQ_PAIRS_SET is acknowledged when
/// the count is valid; every other command gets VIRTIO_NET_ERR.
final class NetControlHandler: QueueHandler, @unchecked Sendable {
    // @unchecked: one worker at a time calls a handler (QueueHandler's contract; engines hand a
    // handler over under a lock and detach it before another may take it), so its state needs none.

    static let classMultiQueue: UInt8 = 4
    static let commandSetPairs: UInt8 = 0
    static let ok: UInt8 = 0
    static let error: UInt8 = 1

    let name: String
    private let context: QueueContext
    private let memory: GuestMemory
    /// The device's queue pairs: VQ_PAIRS_SET must name 1 to this many.
    private let queuePairs: Int
    private let statistics: QueueStatistics
    /// Where commands come from; once the driver broke the ring, nothing more is taken until reset.
    private var intake: QueueIntake
    private var broken: Bool { intake.isBroken }

    init(
        name: String, context: QueueContext, memory: GuestMemory, queuePairs: Int, statistics: QueueStatistics,
        onBrokenQueue: @escaping (String) -> Void
    ) {
        self.name = name
        self.context = context
        self.memory = memory
        self.queuePairs = queuePairs
        self.statistics = statistics
        intake = QueueIntake(context: context, statistics: statistics, label: "control queue", onBroken: onBrokenQueue)
    }

    func poll(budget: Int) -> Int { handleCommands(budget: budget) }

    func setGuestNotifications(enabled: Bool) { context.queue.setNotifications(enabled: enabled) }

    func prepareToSleep() -> Bool {
        statistics.add(.notifications, context.kick.drain())
        return !broken && context.queue.hasAvailable
    }

    var wakeDescriptors: [Int32] { [context.kick.fd] }

    var requestsHandled: UInt64 { statistics.requests.count }

    private func handleCommands(budget: Int) -> Int {
        var handled = 0
        while handled < budget && !broken {
            let next = intake.next()
            if case .none = next { break }
            handled += 1
            statistics.add(.requests)
            switch next {
            case .none, .rejected:
                break  // rejected: already returned empty
            case .chain(let chain):
                let status = execute(chain)
                if status != Self.ok { statistics.add(.errors) }
                if let ack = chain.writable.last, ack.length >= 1 {
                    try? memory.store(status, at: ack.address + UInt64(ack.length) - 1)
                    context.queue.addUsed(head: chain.head, length: 1)
                } else {
                    context.queue.addUsed(head: chain.head, length: 0)
                }
            }
        }
        if handled > 0 && context.queue.needsInterrupt() {
            // Control commands are rare and the driver waits for each: never coalesced.
            statistics.add(.interrupts)
            context.interrupt.raise()
        }
        return handled
    }

    private func execute(_ chain: DescriptorChain) -> UInt8 {
        var command: [UInt8] = []
        for buffer in chain.readable where command.count < 4 {
            guard let bytes = try? memory.read(at: buffer.address, count: min(Int(buffer.length), 4 - command.count))
            else { return Self.error }
            command += bytes
        }
        guard command.count == 4, command[0] == Self.classMultiQueue, command[1] == Self.commandSetPairs else {
            return Self.error
        }
        let pairs = Int(LittleEndian.load(UInt16.self, from: command, at: 2))
        // Every pair keeps being served; the command only has to name a valid count.
        return (1...max(1, queuePairs)).contains(pairs) ? Self.ok : Self.error
    }
}
