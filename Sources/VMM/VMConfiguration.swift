import Hypervisor
import VirtioDevices

/// One VM of a run, validated: its machine and its virtio devices.
public struct VMConfiguration: Sendable {
    public var name: String
    public var machine: MachineConfiguration
    public var disks: [BlockDeviceConfiguration]
    public var nets: [NetDeviceConfiguration]

    public init(
        name: String, machine: MachineConfiguration, disks: [BlockDeviceConfiguration] = [],
        nets: [NetDeviceConfiguration] = []
    ) {
        self.name = name
        self.machine = machine
        self.machine.name = name
        self.disks = disks
        self.nets = nets
    }
}
