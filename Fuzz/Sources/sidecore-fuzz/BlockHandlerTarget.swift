import Hypervisor
@testable import VirtioDevices

/// The virtio-blk queue handler on the null backend, driven by a driver that rewrites its ring
/// between polls. Invariants: a poll takes at most its budget of chains; on the null backend
/// every chain taken is returned in the same poll (used index = chains consumed), so nothing
/// is held or lost; the device reset leaves nothing in flight.
enum BlockHandlerTarget {
    static let device = try! {
        var configuration = BlockDeviceConfiguration(path: nil, id: "fuzz")
        configuration.backend = .null
        configuration.nullSizeInBytes = 1 << 20
        return try BlockDevice(configuration: configuration, name: "blk-fuzz")
    }()

    static func run(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let (size, flags, operations) = input.ringHeader()
        let ram = FuzzRAM.shared
        ram.load(queueSize: size, from: &input)
        let (context, _) = ram.context(index: 0, size: size, eventIndex: flags & 1 != 0)
        let features =
            VirtioFeature.transport | BlockDevice.featureDiscard | BlockDevice.featureWriteZeroes
            | BlockDevice.featureFlush
        guard let handler = try! device.activate(memory: ram.memory, features: features, queues: [context]).first else {
            return
        }
        for operation in operations {
            switch operation % 4 {
            case 0, 1:
                let budget = Int(operation / 4) % 32 + 1
                let before = context.queue.lastAvailableIndex
                _ = handler.poll(budget: budget)
                let taken = context.queue.lastAvailableIndex &- before
                invariant(taken <= budget, "took \(taken) chains with a budget of \(budget)")
                invariant(
                    ram.usedIndex() == context.queue.lastAvailableIndex, "a chain taken was not returned in its poll")
            case 2:
                ram.advanceAvailable(by: UInt16(operation / 4) % (size + 2))
            default:
                handler.setGuestNotifications(enabled: operation & 4 != 0)
                _ = handler.prepareToSleep()
            }
        }
        device.reset()
    }
}
