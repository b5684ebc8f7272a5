import CKVM
import Glibc

/// Running a built machine: one thread per vCPU until power off, reset, a fatal exit or a stop.
extension Machine {
    /// Ends the run with `exit` (the first request wins) and kicks every vCPU out of the guest.
    public func requestExit(_ exit: MachineExit) {
        let first = exitReason.withLock { reason -> Bool in
            if reason != nil { return false }
            reason = exit
            return true
        }
        guard first else { return }
        pauseGate.close()
        // immediate_exit first: a vCPU not yet in KVM_RUN returns at once when it gets there.
        for vcpu in vcpus { vcpu.requestImmediateExit(true) }
        threads.withLock { $0.forEach { $0.kick() } }
        exited.signal()
    }

    /// Presses the ACPI power button: an edge on the Generic Event Device's interrupt. A guest
    /// with ACPI and a handler for the button (Linux: the button driver and e.g. acpid) powers
    /// off; any other guest ignores it.
    public func pressPowerButton() throws {
        try vm.setIRQLine(PowerControl.powerButtonGSI, level: true)
        try vm.setIRQLine(PowerControl.powerButtonGSI, level: false)
    }

    /// Whether the run has ended or is ending (power off, reset, a failure or a stop request).
    public var isEnding: Bool { stopRequested }

    private var stopRequested: Bool { exitReason.withLock { $0 != nil } }

    /// Stops every vCPU before its next entry into the guest; returns once all have stopped.
    /// False (and the machine runs on) if they did not within a second or the run is ending.
    public func pause() -> Bool {
        pauseGate.pause(timeout: 1_000_000_000) {
            for vcpu in vcpus { vcpu.requestImmediateExit(true) }
            threads.withLock { $0.forEach { $0.kick() } }
        }
    }

    /// Lets the vCPUs enter the guest again after `pause`.
    public func resume() { pauseGate.resume() }

    public var isPaused: Bool { pauseGate.isPaused }

    /// Runs every vCPU on its own thread until power off, reset, a fatal exit or `requestExit`.
    public func run() throws -> MachineExit {
        VCPUKickSignal.install()
        let redirector = self.redirector
        // Without a redirector the vCPU threads neither read their APICs nor report their IDs.
        let sampler = activitySampler
        let apics = localAPICs
        try redirector?.start()
        var startFailure: Error?
        for vcpu in vcpus where startFailure == nil {
            let loop = VCPURunLoop(vcpu: vcpu, portBus: portBus, mmioBus: mmioBus)
            let hostCPUs = configuration.vcpuHostCPUs
            let created = Result {
                try HostThread(name: "vcpu\(vcpu.id)") { [unowned self] in
                    self.pauseGate.threadStarted()
                    defer { self.pauseGate.threadEnded() }
                    if let hostCPUs {
                        _ = hostCPUs.withUnsafeBufferPointer { ckvm_set_thread_cpus($0.baseAddress, Int32($0.count)) }
                    }
                    sampler?.setThreadID(ckvm_thread_id(), vcpu: vcpu.id)
                    // Nothing answered yet: the first entry reads the APIC, so a request made before
                    // this thread started is not missed.
                    var answered = UInt64.max
                    var history = ExitHistory()
                    do {
                        let exit = try loop.run(
                            until: {
                                self.pauseGate.waitWhilePaused()
                                return self.stopRequested
                            },
                            beforeEntry: {
                                guard sampler != nil else { return }
                                let requested = apics.requestedGeneration
                                guard requested != answered else { return }
                                answered = requested
                                apics.store(try? vcpu.localAPICIdentity(), vcpu: vcpu.id)
                            }, history: &history)
                        if case .shutdown = exit { self.recordTripleFault(vcpu) }
                        if let machineExit = Self.machineExit(for: exit, vcpu: vcpu.id) {
                            self.requestExit(machineExit)
                        }
                    } catch {
                        self.requestExit(.failed("\(error)"))
                    }
                    // Out of KVM_RUN for good: what the vCPU was doing, for a triple fault or a hang.
                    let report = VCPUStateReport.capture(vcpu, history: history)
                    self.stateReports.withLock { $0.append(report) }
                }
            }
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
    func requestLocalAPICReadings() {
        localAPICs.requestReadings()
        for vcpu in vcpus { vcpu.requestImmediateExit(true) }
        threads.withLock { $0.forEach { $0.kick() } }
    }

    /// Each vCPU's state as its thread ended, in vCPU order; complete once `run` has returned.
    public var vcpuStateReports: [VCPUStateReport] { stateReports.withLock { $0.sorted { $0.vcpu < $1.vcpu } } }

    /// Where a vCPU triple-faulted (the machine then resets), for the user to see why a guest
    /// rebooted: nil when none did.
    public var tripleFault: String? { tripleFaultState.withLock { $0 } }

    private func recordTripleFault(_ vcpu: VCPU) {
        let registers = try? vcpu.registers()
        let special = try? vcpu.specialRegisters()
        func hex(_ value: UInt64?) -> String { value.map { "0x" + String($0, radix: 16) } ?? "?" }
        let description: String
        if registers?.rip == 0xFFF0 && special?.cr3 == 0 && special?.efer == 0 {
            // AMD: KVM INITs the vCPU on a shutdown intercept, so the faulting state is gone.
            description = "vcpu\(vcpu.id) triple-faulted (its registers were reset by KVM, as on AMD hosts)"
        } else {
            description =
                "vcpu\(vcpu.id) triple-faulted at RIP \(hex(registers?.rip)) RSP \(hex(registers?.rsp)) "
                + "CR0 \(hex(special?.cr0)) CR3 \(hex(special?.cr3)) CR4 \(hex(special?.cr4)) "
                + "EFER \(hex(special?.efer))"
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
