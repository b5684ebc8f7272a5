/// What to build: the boot payload, vCPUs and RAM, where the vCPU threads run and how
/// interrupts may be redirected among them.
public struct MachineConfiguration: Sendable {
    public var boot: LinuxBootConfiguration
    public var vcpuCount: Int
    public var memoryInBytes: UInt64
    /// Host CPUs the vCPU threads may run on (nil: any), e.g. all but the polling side cores'.
    public var vcpuHostCPUs: [Int32]?
    /// Interrupt redirection (`InterruptRedirector`); it can act only with several vCPUs.
    public var interruptRedirection: InterruptRedirectionMode
    /// What the machine's log lines call it: its VM's name (`VMConfiguration` sets it).
    public var name = "vm0"

    public init(
        boot: LinuxBootConfiguration, vcpuCount: Int, memoryInBytes: UInt64, vcpuHostCPUs: [Int32]? = nil,
        interruptRedirection: InterruptRedirectionMode = .off
    ) {
        self.boot = boot
        self.vcpuCount = vcpuCount
        self.memoryInBytes = memoryInBytes
        self.vcpuHostCPUs = vcpuHostCPUs
        self.interruptRedirection = interruptRedirection
    }
}

/// How a machine's run ended.
public enum MachineExit: Equatable, Sendable {
    case powerOff
    case reboot
    /// Stopped from the host (a signal or the console escape); carries the signal number.
    case stopped(signal: Int32)
    /// Stopped through the API (`vm.shutdown`): ended as asked, not a failure.
    case shutDown
    case failed(String)
}

extension MachineExit: CustomStringConvertible {
    /// As statistics and logs name it: poweroff, reboot, signal N, shutdown, failed: REASON.
    public var description: String {
        switch self {
        case .powerOff: "poweroff"
        case .reboot: "reboot"
        case .stopped(let signal): "signal \(signal)"
        case .shutDown: "shutdown"
        case .failed(let reason): "failed: \(reason)"
        }
    }
}
