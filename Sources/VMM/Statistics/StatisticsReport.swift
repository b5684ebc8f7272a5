import Glibc

/// The `--stats-json` document. One VM: `{"vcpus":[{"id":0,"kvm":{"exits":N,...}}],"devices":
/// [{"name":"blk0","type":"virtio-blk","queues":[{"index":0,"requests":N,...}]}],"exit":"poweroff",
/// "ioMode":"hybrid","sideCores":[{"name":"side0",...}]}`. Several VMs (`--config`): the VMs'
/// parts, each with its name, under "vms", next to the shared "ioMode" and "sideCores".
public struct StatisticsReport: Encodable, Sendable {
    /// When the figures were read: seconds since the Unix epoch (rates come from two samples).
    public let timestamp: Double
    /// Seconds since the VMs were built.
    public let uptimeSeconds: Double
    public let vms: [VMReport]
    public let ioMode: String
    public let sideCores: [SideCoreReport]
    /// One VM from the command line: its fields at the top level.
    public let singleVMAtTopLevel: Bool
    /// With --side-cores auto: whether the iocm thread decides now, and how often it resized.
    public var iocm: IOCMReport?

    public struct IOCMReport: Encodable, Sendable {
        public let automatic: Bool
        public let resizes: UInt64
    }

    init(
        vms: [VMReport], ioMode: String, sideCores: [SideCoreReport], singleVMAtTopLevel: Bool, uptimeSeconds: Double,
        iocm: IOCMReport?
    ) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        timestamp = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
        self.uptimeSeconds = uptimeSeconds
        self.vms = vms
        self.ioMode = ioMode
        self.sideCores = sideCores
        self.singleVMAtTopLevel = singleVMAtTopLevel
        self.iocm = iocm
    }

    private enum CodingKeys: String, CodingKey {
        case timestamp, uptimeSeconds, vms, vcpus, devices, exit, irqRedirection, ioMode, sideCores, iocm
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(timestamp, forKey: .timestamp)
        try container.encode(uptimeSeconds, forKey: .uptimeSeconds)
        if singleVMAtTopLevel, let vm = vms.first {
            try container.encode(vm.vcpus, forKey: .vcpus)
            try container.encode(vm.devices, forKey: .devices)
            try container.encode(vm.exit, forKey: .exit)
            try container.encodeIfPresent(vm.irqRedirection, forKey: .irqRedirection)
        } else {
            try container.encode(vms, forKey: .vms)
        }
        try container.encode(ioMode, forKey: .ioMode)
        try container.encode(sideCores, forKey: .sideCores)
        try container.encodeIfPresent(iocm, forKey: .iocm)
    }
}
