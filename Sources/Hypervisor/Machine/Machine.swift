import CKVM
import Dispatch
import Glibc
import Synchronization

/// What to build: the boot payload, vCPUs and RAM.
public struct MachineConfiguration: Sendable {
    public var boot: LinuxBootConfiguration
    public var vcpuCount: Int
    public var memoryInBytes: UInt64

    public init(boot: LinuxBootConfiguration, vcpuCount: Int, memoryInBytes: UInt64) {
        self.boot = boot
        self.vcpuCount = vcpuCount
        self.memoryInBytes = memoryInBytes
    }
}

/// How a machine's run ended.
public enum MachineExit: Equatable, Sendable {
    case powerOff
    case reboot
    /// Stopped from the host (a signal or the console escape); carries the signal number.
    case stopped(signal: Int32)
    case failed(String)
}

/// A PC-like x86-64 VM: RAM, in-kernel irqchip and PIT, COM1, ACPI power control and N vCPUs,
/// with Linux loaded and the boot vCPU at its entry point.
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
    private var vcpus: [VCPU] = []
    private var statisticsReaders: [KVMStatisticsReader] = []
    /// Host CPUs the vCPU threads may run on (nil: any), e.g. all but the polling side cores'.
    /// Set before `run`.
    public var vcpuHostCPUs: [Int32]?
    /// Interrupt redirection (`InterruptRedirector`) while the machine runs; set before `run`.
    /// It can act only with several vCPUs.
    public var interruptRedirection = InterruptRedirectionMode.off {
        didSet { if interruptRedirection != .off { redirector?.mode = interruptRedirection } }
    }
    /// The redirector when `interruptRedirection` is on and there are several vCPUs, for its statistics.
    public var activeRedirector: InterruptRedirector? { interruptRedirection != .off ? redirector : nil }
    /// Created with the machine (nil with one vCPU), so readers on other threads never race its creation.
    private var redirector: InterruptRedirector?
    private let localAPICs: LocalAPICDirectory
    /// The redirector's view of the vCPUs (with it only).
    private var activitySampler: VCPUActivitySampler?
    /// vCPU threads; guarded because a vCPU may request an exit while later ones are still starting.
    private let threads = Lock<[HostThread]>([])
    private let exitReason = Lock<MachineExit?>(nil)
    private let exited = DispatchSemaphore(value: 0)

    /// Builds the machine. `consoleOutput` receives every byte the guest writes to COM1.
    public init(configuration: MachineConfiguration, kvm: KVM, consoleOutput: @escaping @Sendable (UInt8) -> Void) throws {
        let maxVCPUs = kvm.maxVCPUs
        guard (1...maxVCPUs).contains(configuration.vcpuCount) else {
            throw ConfigurationError(.vcpuCount, value: "\(configuration.vcpuCount)", "out of range: KVM on this host allows 1 to \(maxVCPUs)")
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
        interruptRouter = InterruptRouter(vm: vm)
        localAPICs = LocalAPICDirectory(vcpuCount: configuration.vcpuCount)

        let vm = self.vm
        serial = Serial16550(output: consoleOutput, setIRQLevel: { level in
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
        for id in 0..<configuration.vcpuCount {
            let vcpu = try vm.createVCPU(id: id)
            try vcpu.setCPUID(CPUIDConfiguration.entries(from: supportedCPUID, vcpuID: id, vcpuCount: configuration.vcpuCount))
            try vcpu.setFirmwareMSRs()
            try vcpu.configureLocalInterrupts()
            // APs stay in wait-for-SIPI inside the in-kernel LAPIC until Linux starts them.
            if id == 0 { try kernel.prepare(vcpu, memory: memory) }
            statisticsReaders.append(try vcpu.statisticsReader())
            vcpus.append(vcpu)
        }
        if configuration.vcpuCount > 1 {
            let sampler = VCPUActivitySampler(readers: statisticsReaders)
            activitySampler = sampler
            redirector = InterruptRedirector(router: interruptRouter, apics: localAPICs,
                                             requestReadings: { [unowned self] in self.requestLocalAPICReadings() },
                                             sampleActivity: { sampler.sample() })
        }
    }

    /// Ends the run with `exit` (the first request wins) and kicks every vCPU out of the guest.
    public func requestExit(_ exit: MachineExit) {
        let first = exitReason.withLock { reason -> Bool in
            if reason != nil { return false }
            reason = exit
            return true
        }
        guard first else { return }
        // immediate_exit first: a vCPU not yet in KVM_RUN returns at once when it gets there.
        for vcpu in vcpus { vcpu.requestImmediateExit(true) }
        threads.withLock { $0.forEach { $0.kick() } }
        exited.signal()
    }

    private var stopRequested: Bool { exitReason.withLock { $0 != nil } }

    /// Runs every vCPU on its own thread until power off, reset, a fatal exit or `requestExit`.
    public func run() throws -> MachineExit {
        VCPUKickSignal.install()
        let redirector = activeRedirector
        // Without a redirector the vCPU threads neither read their APICs nor report their IDs.
        let sampler = redirector == nil ? nil : activitySampler
        // Before the vCPU threads exist: only they program MSI messages.
        if let redirector { interruptRouter.onGuestMessageChange = { redirector.guestMessagesChanged() } }
        let apics = localAPICs
        try redirector?.start()
        var startFailure: Error?
        for vcpu in vcpus where startFailure == nil {
            let loop = VCPURunLoop(vcpu: vcpu, portBus: portBus, mmioBus: mmioBus)
            let hostCPUs = vcpuHostCPUs
            let created = Result { try HostThread(name: "vcpu\(vcpu.id)") { [unowned self] in
                if let hostCPUs { _ = hostCPUs.withUnsafeBufferPointer { ckvm_set_thread_cpus($0.baseAddress, Int32($0.count)) } }
                sampler?.setThreadID(ckvm_thread_id(), vcpu: vcpu.id)
                // Nothing answered yet: the first entry reads the APIC, so a request made before
                // this thread started is not missed.
                var answered = UInt64.max
                var history = ExitHistory()
                do {
                    let exit = try loop.run(until: { self.stopRequested }, beforeEntry: {
                        guard sampler != nil else { return }
                        let requested = apics.requestedGeneration
                        guard requested != answered else { return }
                        answered = requested
                        apics.store(try? vcpu.localAPICIdentity(), vcpu: vcpu.id)
                    }, history: &history)
                    if case .shutdown = exit { self.recordTripleFault(vcpu) }
                    if let machineExit = Self.machineExit(for: exit, vcpu: vcpu.id) { self.requestExit(machineExit) }
                } catch {
                    self.requestExit(.failed("\(error)"))
                }
                // Out of KVM_RUN for good: what the vCPU was doing, for a triple fault or a hang.
                let report = VCPUStateReport.capture(vcpu, history: history)
                self.stateReports.withLock { $0.append(report) }
            } }
            switch created {
            case .success(let thread): threads.withLock { $0.append(thread) }
            case .failure(let error):
                // Stop what did start before reporting it.
                startFailure = error
                requestExit(.failed("\(error)"))
            }
        }
        exited.wait()
        // Before the vCPU threads end: the redirector kicks them.
        redirector?.stop()
        // Kick again: a vCPU may have entered KVM_RUN between the first kick and now.
        let started = threads.withLock { $0 }
        for thread in started { thread.kick() }
        for thread in started { thread.join() }
        if let startFailure { throw startFailure }
        return exitReason.withLock { $0! }
    }

    /// Has every vCPU read its local APIC before it next enters the guest (into `localAPICs`),
    /// kicking the running ones out of KVM_RUN for it.
    private func requestLocalAPICReadings() {
        localAPICs.requestReadings()
        for vcpu in vcpus { vcpu.requestImmediateExit(true) }
        threads.withLock { $0.forEach { $0.kick() } }
    }

    /// Each vCPU's state as its thread ended, in vCPU order; complete once `run` has returned.
    public var vcpuStateReports: [VCPUStateReport] { stateReports.withLock { $0.sorted { $0.vcpu < $1.vcpu } } }
    private let stateReports = Lock<[VCPUStateReport]>([])

    /// Where a vCPU triple-faulted (the machine then resets), for the user to see why a guest
    /// rebooted: nil when none did.
    public var tripleFault: String? { tripleFaultState.withLock { $0 } }
    private let tripleFaultState = Lock<String?>(nil)

    private func recordTripleFault(_ vcpu: VCPU) {
        let registers = try? vcpu.registers()
        let special = try? vcpu.specialRegisters()
        func hex(_ value: UInt64?) -> String { value.map { "0x" + String($0, radix: 16) } ?? "?" }
        let description: String
        if registers?.rip == 0xFFF0 && special?.cr3 == 0 && special?.efer == 0 {
            // AMD: KVM INITs the vCPU on a shutdown intercept, so the faulting state is gone.
            description = "vcpu\(vcpu.id) triple-faulted (its registers were reset by KVM, as on AMD hosts)"
        } else {
            description = "vcpu\(vcpu.id) triple-faulted at RIP \(hex(registers?.rip)) RSP \(hex(registers?.rsp)) "
                + "CR0 \(hex(special?.cr0)) CR3 \(hex(special?.cr3)) CR4 \(hex(special?.cr4)) EFER \(hex(special?.efer))"
        }
        tripleFaultState.withLock { if $0 == nil { $0 = description } }
    }

    static func machineExit(for exit: VCPUExit, vcpu: Int) -> MachineExit? {
        switch exit {
        case .stopRequested: return nil
        case .shutdown: return .reboot  // triple fault resets a PC
        case .systemEvent(let type) where type == KVM_SYSTEM_EVENT_SHUTDOWN: return .powerOff
        case .systemEvent(let type) where type == KVM_SYSTEM_EVENT_RESET: return .reboot
        case .systemEvent(let type): return .failed("vcpu\(vcpu): KVM system event \(type)")
        case .halted: return .failed("vcpu\(vcpu) halted without an in-kernel irqchip")
        case .internalError(let suberror):
            let detail = suberror == UInt32(KVM_INTERNAL_ERROR_EMULATION) ? " (emulation failure)" : ""
            return .failed("vcpu\(vcpu): KVM internal error, suberror \(suberror)\(detail)")
        case .failedEntry(let reason):
            return .failed("vcpu\(vcpu): KVM could not enter the guest, hardware reason 0x\(String(reason, radix: 16))")
        case .unhandled(let reason):
            return .failed("vcpu\(vcpu): unhandled KVM exit reason \(reason)")
        }
    }

    /// Each vCPU's KVM binary statistics, by KVM's names, in vCPU order.
    public func vcpuStatistics() throws -> [[String: UInt64]] {
        try statisticsReaders.map { try $0.read() }
    }
}
