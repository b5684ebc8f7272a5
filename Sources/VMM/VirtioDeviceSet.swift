import Hypervisor
import Logging
import VirtioDevices

/// The virtio devices of one VM: created from the command line and put on its PCI bus.
public final class VirtioDeviceSet: Sendable {
    private let blocks: [(device: BlockDevice, transport: VirtioPCITransport)]
    private let networks: [(device: NetDevice, transport: VirtioPCITransport)]

    /// `namePrefix` tells devices of different VMs apart on shared side cores (e.g. "a."); the
    /// devices' log events carry `vmName`.
    init(
        machine: Machine, engine: QueueEngine, disks: [BlockDeviceConfiguration], nets: [NetDeviceConfiguration],
        namePrefix: String = "", vmName: String = ""
    ) throws {
        var logger = Logger(label: "sidecore.virtio")
        logger[metadataKey: "vm"] = "\(vmName)"

        var blocks: [(device: BlockDevice, transport: VirtioPCITransport)] = []
        var networks: [(device: NetDevice, transport: VirtioPCITransport)] = []
        for (index, var configuration) in disks.enumerated() {
            let name = "\(namePrefix)blk\(index)"
            if configuration.id.isEmpty { configuration.id = "sidecore-\(name)" }
            let device = try BlockDevice(configuration: configuration, name: name)
            blocks.append((device, try Self.attach(device, name: name, to: machine, engine: engine, logger: logger)))
        }
        for (index, configuration) in nets.enumerated() {
            let name = "\(namePrefix)net\(index)"
            let device = try NetDevice(configuration: configuration, name: name)
            networks.append(
                (device, try Self.attach(device, name: name, to: machine, engine: engine, logger: logger)))
        }
        self.blocks = blocks
        self.networks = networks
    }

    /// Puts `device` behind a virtio-pci function on the machine's PCI bus.
    private static func attach(
        _ device: VirtioDevice, name: String, to machine: Machine, engine: QueueEngine, logger: Logger
    ) throws -> VirtioPCITransport {
        let transport = try VirtioPCITransport(
            device: device, name: name, root: machine.pciRoot, vm: machine.vm,
            router: machine.interruptRouter, memory: machine.memory, engine: engine, logger: logger)
        _ = machine.pciRoot.add(transport)
        return transport
    }

    public func statistics() -> [DeviceStatistics] {
        func queues(_ statistics: [QueueStatistics], names: (Int) -> String) -> [DeviceStatistics.Queue] {
            statistics.enumerated().map { index, queue in
                let latency = queue.latency.snapshot
                return DeviceStatistics.Queue(
                    index: index, name: names(index), requests: queue.requests.count, bytes: queue.bytes.count,
                    notifications: queue.notifications.count, interrupts: queue.interrupts.count,
                    redirected: queue.redirected.count, errors: queue.errors.count, flushes: queue.flushes.count,
                    coalesced: queue.coalesced.count, completionBatches: queue.completionBatches.count,
                    latency: LatencySummary(latency), latencyBuckets: latency)
            }
        }
        let disks = blocks.map { block in
            DeviceStatistics(
                name: block.device.name, type: "virtio-blk",
                queues: queues(block.device.queueStatistics) { "request\($0)" },
                deviceErrors: block.transport.errorCount.count)
        }
        let nics = networks.map { network in
            let pairs = network.device.configuration.queuePairs
            return DeviceStatistics(
                name: network.device.name, type: "virtio-net",
                queues: queues(network.device.queueStatistics) {
                    $0 == 2 * pairs ? "control" : ($0 % 2 == 0 ? "rx\($0 / 2)" : "tx\($0 / 2)")
                },
                deviceErrors: network.transport.errorCount.count)
        }
        return disks + nics
    }

    /// Stops serving every queue for a pause (nothing is reset or lost), once the vCPUs have stopped.
    func suspend() {
        for transport in blocks.map(\.transport) + networks.map(\.transport) { transport.suspendQueues() }
    }

    /// Serves the queues again, before the vCPUs resume.
    func resume() {
        for transport in blocks.map(\.transport) + networks.map(\.transport) { transport.resumeQueues() }
    }

    /// Stops queue processing (requests in flight finish first), once the vCPUs have stopped.
    public func stop() {
        for block in blocks { block.transport.deactivate() }
        for network in networks { network.transport.deactivate() }
    }
}
