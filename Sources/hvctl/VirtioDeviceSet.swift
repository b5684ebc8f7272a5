import Hypervisor
import VirtioDevices

/// Per-queue counters of one device, as `--stats-json` writes them.
struct DeviceStatistics: Encodable {
    struct Queue: Encodable {
        let index: Int
        let requests: UInt64
        let bytes: UInt64
        let notifications: UInt64
        let interrupts: UInt64
        let errors: UInt64
    }

    let name: String
    let type: String
    let queues: [Queue]
    let deviceErrors: UInt64
}

/// The virtio devices of one VM: created from the command line and put on its PCI bus.
final class VirtioDeviceSet {
    private var blocks: [(device: BlockDevice, transport: VirtioPCITransport)] = []

    init(machine: Machine, disks: [BlockDeviceConfiguration]) throws {
        for (index, var configuration) in disks.enumerated() {
            let name = "blk\(index)"
            if configuration.id.isEmpty { configuration.id = "sidecore-\(name)" }
            let device = try BlockDevice(configuration: configuration, name: name)
            let transport = try VirtioPCITransport(device: device, name: name, root: machine.pciRoot, vm: machine.vm,
                                                   router: machine.interruptRouter, memory: machine.memory)
            device.transportNeedsReset = { [unowned transport] reason in transport.markNeedsReset(reason) }
            _ = machine.pciRoot.add(transport)
            blocks.append((device, transport))
        }
    }

    func statistics() -> [DeviceStatistics] {
        blocks.map { block in
            DeviceStatistics(
                name: block.device.name, type: "virtio-blk",
                queues: block.device.queueStatistics.enumerated().map { index, queue in
                    DeviceStatistics.Queue(index: index, requests: queue.requests.count, bytes: queue.bytes.count,
                                           notifications: queue.notifications.count, interrupts: queue.interrupts.count,
                                           errors: queue.errors.count)
                },
                deviceErrors: block.transport.errorCount.count)
        }
    }

    /// Stops the device workers (their io_urings drain first).
    func stop() {
        for block in blocks { block.device.reset() }
    }
}
