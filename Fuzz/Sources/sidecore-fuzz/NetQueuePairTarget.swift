import Glibc
import Hypervisor
@testable import VirtioDevices

/// The virtio-net queue pair against a datagram socket pair standing in for the TAP, with frames
/// and ring rewrites from the input. Invariants: a poll consumes at most its budget of receive
/// chains and of transmit chains; receive chains held for a partly placed frame never exceed
/// the queue size; transmit chains are all returned (none held).
enum NetQueuePairTarget {
    /// (handler's end, host's end), non-blocking; drained at the start of every run.
    static let sockets: (tap: Int32, host: Int32) = {
        var pair: [Int32] = [0, 0]
        let status = socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &pair)
        precondition(status == 0, "socketpair failed")
        return (pair[0], pair[1])
    }()
    nonisolated(unsafe) static var scratch = [UInt8](repeating: 0, count: 1 << 17)

    static func drain(_ fd: Int32) {
        while scratch.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, 0) }) > 0 {}
    }

    static func run(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let (size, flags, operations) = input.ringHeader()
        let ram = FuzzRAM.shared
        ram.load(queueSize: size, from: &input, payload: false)
        ram.loadRings(queueSize: size, base: FuzzRAM.secondQueue, from: &input)
        try! ram.memory.write(input.take(Int(FuzzRAM.size - FuzzRAM.payload) / 2), at: FuzzRAM.payload)
        drain(sockets.tap)
        drain(sockets.host)
        let (rx, _) = ram.context(index: 0, size: size, eventIndex: flags & 1 != 0)
        let (tx, _) = ram.context(index: 1, size: size, base: FuzzRAM.secondQueue, eventIndex: flags & 1 != 0)
        let handler = NetQueuePairHandler(
            name: "net-fuzz", tapFD: sockets.tap, rx: rx, tx: tx, memory: ram.memory,
            mergeable: flags & 2 != 0, rxStatistics: QueueStatistics(),
            txStatistics: QueueStatistics(), onBrokenQueue: { _ in })
        for operation in operations {
            switch operation % 4 {
            case 0:
                let budget = Int(operation / 4) % 32 + 1
                let (rxBefore, txBefore) = (rx.queue.lastAvailableIndex, tx.queue.lastAvailableIndex)
                _ = handler.poll(budget: budget)
                let rxTaken = rx.queue.lastAvailableIndex &- rxBefore
                let txTaken = tx.queue.lastAvailableIndex &- txBefore
                invariant(rxTaken <= budget, "consumed \(rxTaken) receive chains with a budget of \(budget)")
                invariant(txTaken <= budget, "consumed \(txTaken) transmit chains with a budget of \(budget)")
                let held = rx.queue.lastAvailableIndex &- ram.usedIndex()
                invariant(held <= size, "holding \(held) receive chains in a ring of \(size)")
                invariant(
                    tx.queue.lastAvailableIndex &- ram.usedIndex(base: FuzzRAM.secondQueue) <= 1,
                    "transmit chains held beyond the one the TAP refused")
            case 1:
                // A frame from the host: length from the input, contents from guest payload bytes.
                let length = Int(input.u16()) % 9000 + 1
                _ = scratch.withUnsafeBytes { send(sockets.host, $0.baseAddress, length, 0) }
            case 2:
                ram.advanceAvailable(
                    by: UInt16(operation / 4) % (size + 2), base: operation & 0x80 != 0 ? FuzzRAM.secondQueue : 0)
            default:
                handler.setGuestNotifications(enabled: operation & 4 != 0)
                _ = handler.prepareToSleep()
                drain(sockets.host)
            }
        }
    }
}
