import CKVM
import Dispatch
import Glibc
import Synchronization

/// A PC-like x86-64 VM: RAM, in-kernel irqchip and PIT, COM1, ACPI power control and N vCPUs,
/// with Linux loaded and the boot vCPU at its entry point. Built here; run in MachineRun.swift.
public final class Machine: @unchecked Sendable {
    // @unchecked: the `var`s below are set while the machine is built or before `run` starts its
    // threads, and only read after that; what the threads share at run time is behind locks.
    public let configuration: MachineConfiguration
    public let kvm: KVM
    public let vm: VirtualMachine
    public let memory: GuestMemory
    public let portBus = IOBus()
    public let mmioBus = IOBus()
    public private(set) var serial: Serial16550!
    public let kernel: LoadedKernel
    /// PCI bus 0; add devices before `run()`.
    public let pciRoot = PCIRoot()
    public let interruptRouter: InterruptRouter
    private(set) var vcpus: [VCPU] = []
    private(set) var statisticsReaders: [KVMStatisticsReader] = []
    /// Interrupt redirection while the machine runs, when the configuration asks for it and
    /// there are several vCPUs (nil otherwise); created with the machine, so readers on other
    /// threads never race its creation.
    public private(set) var redirector: InterruptRedirector?
    let localAPICs: LocalAPICDirectory
    /// The redirector's view of the vCPUs (with it only).
    private(set) var activitySampler: VCPUActivitySampler?
    /// vCPU threads; guarded because a vCPU may request an exit while later ones are still starting.
    let threads = Lock<[HostThread]>([])
    let exitReason = Lock<MachineExit?>(nil)
    let exited = DispatchSemaphore(value: 0)
    let stateReports = Lock<[VCPUStateReport]>([])
    let tripleFaultState = Lock<String?>(nil)
    let pauseGate = VCPUPauseGate()

    /// Builds the machine. `consoleOutput` receives every byte the guest writes to COM1.
    public init(configuration: MachineConfiguration, kvm: KVM, consoleOutput: @escaping @Sendable (UInt8) -> Void)
        throws
    {
        let maxVCPUs = kvm.maxVCPUs
        guard (1...maxVCPUs).contains(configuration.vcpuCount) else {
            throw ConfigurationError(
                .vcpuCount, value: "\(configuration.vcpuCount)",
                "out of range: KVM on this host allows 1 to \(maxVCPUs)")
        }
        guard configuration.memoryInBytes >= X86Layout.biosAreaEnd else {
            throw ConfigurationError(.memoryInBytes, value: "\(configuration.memoryInBytes)", "must be at least 1 MiB")
        }
        self.configuration = configuration
        self.kvm = kvm
        memory = try GuestMemory(ranges: X86Layout.ramRanges(memoryInBytes: configuration.memoryInBytes))
        vm = try kvm.createVM()
        kernel = try LinuxLoader.load(configuration.boot, into: memory, rsdpAddress: X86Layout.acpiTablesAddress)
        try ACPITables.write(to: memory, vcpuCount: configuration.vcpuCount)
        try ResetVector.write(to: memory)
        try vm.setIdentityMapAddress(X86Layout.identityMapAddress)
        try vm.setTSSAddress(X86Layout.tssAddress)
        try vm.createIRQChip()
        try vm.createPIT()
        try vm.map(memory)
        let messageChanges = GuestMessageChanges()
        interruptRouter = InterruptRouter(vm: vm, messageChanges: messageChanges)
        localAPICs = LocalAPICDirectory(vcpuCount: configuration.vcpuCount)

        let vm = self.vm
        serial = Serial16550(
            output: consoleOutput,
            setIRQLevel: { level in
                try? vm.setIRQLine(Serial16550.com1IRQ, level: level)
            })
        let power = PowerControl { [unowned self] event in
            self.requestExit(event == .powerOff ? .powerOff : .reboot)
        }
        try portBus.register(serial, base: Serial16550.com1Base, length: 8)
        try portBus.register(power.acpiRegisters, base: UInt64(PowerControl.sleepControlPort), length: 8)
        try portBus.register(power.i8042, base: UInt64(PowerControl.i8042DataPort), length: 5)
        try pciRoot.attach(portBus: portBus, mmioBus: mmioBus)

        let supportedCPUID = try kvm.supportedCPUID()
        let tscDeadlineTimer = kvm.checkExtension(KVM_CAP_TSC_DEADLINE_TIMER) > 0
        for id in 0..<configuration.vcpuCount {
            let vcpu = try vm.createVCPU(id: id)
            try vcpu.setCPUID(
                CPUIDConfiguration.entries(
                    from: supportedCPUID, vcpuID: id, vcpuCount: configuration.vcpuCount,
                    tscDeadlineTimer: tscDeadlineTimer))
            try vcpu.setFirmwareMSRs()
            try vcpu.configureLocalInterrupts()
            // APs stay in wait-for-SIPI inside the in-kernel LAPIC until Linux starts them.
            if id == 0 { try kernel.prepare(vcpu, memory: memory) }
            statisticsReaders.append(try vcpu.statisticsReader())
            vcpus.append(vcpu)
        }
        if configuration.vcpuCount > 1 && configuration.interruptRedirection != .off {
            let sampler = VCPUActivitySampler(readers: statisticsReaders)
            activitySampler = sampler
            redirector = InterruptRedirector(
                mode: configuration.interruptRedirection, router: interruptRouter,
                messageChanges: messageChanges, apics: localAPICs,
                requestReadings: { [unowned self] in self.requestLocalAPICReadings() },
                sampleActivity: { sampler.sample() }, vmName: configuration.name)
        }
    }
}
