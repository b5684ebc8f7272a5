import Hypervisor
@testable import VirtioDevices

/// The virtio-net control queue on rings the input writes. Invariant: a poll takes at most its
/// budget and answers every command it takes in that poll.
enum NetControlTarget {
    static func run(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let size = FuzzRAM.queueSize(input.u8())
        let pairs = Int(input.u8() % 17)
        let operations = Array(input.take(Int(input.u8() % 16)))
        let ram = FuzzRAM.shared
        ram.load(queueSize: size, from: &input)
        let (context, _) = ram.context(index: 0, size: size, eventIndex: false)
        let handler = NetControlHandler(
            name: "ctl-fuzz", context: context, memory: ram.memory, queuePairs: pairs,
            statistics: QueueStatistics(), onBrokenQueue: { _ in })
        for operation in operations {
            if operation & 1 == 0 {
                let budget = Int(operation / 2) % 32 + 1
                let before = context.queue.lastAvailableIndex
                _ = handler.poll(budget: budget)
                invariant(context.queue.lastAvailableIndex &- before <= budget, "over budget")
                invariant(ram.usedIndex() == context.queue.lastAvailableIndex, "a command taken was not answered")
            } else {
                ram.advanceAvailable(by: UInt16(operation / 2) % (size + 2))
            }
        }
    }
}
