import Hypervisor

/// One VM's part of the `--stats-json` document: vCPU counters keyed by KVM's own statistic
/// names, per-queue device counters, and how the VM ended.
public struct VMReport: Encodable, Sendable {
    public struct VCPU: Encodable, Sendable {
        public let id: Int
        public let kvm: [String: UInt64]
    }

    /// Interrupt redirection's route changes; nil when it is off or the VM has one vCPU.
    public struct Redirection: Encodable, Sendable {
        public let mode: String
        public let retargets: UInt64
        public let restores: UInt64
        public let failures: UInt64
        public let lastFailure: String?

        init(_ redirector: InterruptRedirector) {
            mode = redirector.mode.rawValue
            retargets = redirector.retargets.count
            restores = redirector.restores.count
            failures = redirector.failures.count
            lastFailure = redirector.lastFailure.withLock { $0 }
        }
    }

    public let name: String
    public let vcpus: [VCPU]
    public let devices: [DeviceStatistics]
    public let exit: String
    public let irqRedirection: Redirection?

    /// `exit` nil: the VM is still running (a live report on the control socket).
    init(
        name: String, vcpus: [[String: UInt64]], devices: [DeviceStatistics], redirector: InterruptRedirector?,
        exit: MachineExit?
    ) {
        self.name = name
        irqRedirection = redirector.map(Redirection.init)
        self.vcpus = vcpus.enumerated().map { VCPU(id: $0.offset, kvm: $0.element) }
        self.devices = devices
        self.exit = exit?.description ?? "running"
    }
}
