import Hypervisor
@testable import VirtioDevices

/// The split virtqueue's chain walk and virtio-blk request parsing on rings the input writes.
/// Invariants: at most `size` chains are popped before the ring is empty or broken, every buffer
/// of a chain lies in guest RAM, a chain has at most `size` buffers (indirect tables included),
/// and a parsed request's status byte is in guest RAM.
enum VirtqueueTarget {
    static func run(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let size = FuzzRAM.queueSize(input.u8())
        let flags = input.u8()
        let ram = FuzzRAM.shared
        ram.load(queueSize: size, from: &input)
        let queue = ram.queue(size: size, eventIndex: flags & 1 != 0)
        var popped = 0
        while true {
            guard let result = try? queue.popAvailable() else { break }
            popped += 1
            invariant(popped <= Int(size), "popped \(popped) chains from a ring of \(size)")
            guard case .chain(let chain) = result else { continue }
            invariant(chain.head < size, "head \(chain.head) in a ring of \(size)")
            invariant(chain.buffers.count <= Int(size), "\(chain.buffers.count) buffers in a ring of \(size)")
            for buffer in chain.buffers {
                invariant(ram.memory.contains(buffer.address, length: UInt64(buffer.length)), "buffer outside RAM")
            }
            let features = VirtioFeature.transport | BlockDevice.featureDiscard | BlockDevice.featureWriteZeroes
            switch BlockRequest.parse(
                chain, memory: ram.memory, capacityInSectors: 128, readOnly: flags & 2 != 0, features: features)
            {
            case .success(let request):
                invariant(ram.memory.contains(request.statusAddress, length: 1), "status byte outside RAM")
            case .failure(let refusal):
                if let address = refusal.statusAddress {
                    invariant(ram.memory.contains(address, length: 1), "status byte outside RAM")
                }
            }
            queue.addUsed(head: chain.head, length: 0)
        }
        queue.setNotifications(enabled: flags & 4 != 0)
        _ = queue.needsInterrupt()
    }
}
