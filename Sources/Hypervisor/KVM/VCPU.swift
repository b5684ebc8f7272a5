import CKVM
import Glibc

/// A KVM vCPU file descriptor and its shared `struct kvm_run` mapping.
public final class VCPU: @unchecked Sendable {
    // @unchecked: `run` is read and written only by the thread that calls KVM_RUN on the vCPU
    // (Machine gives each vCPU one thread); other threads only issue ioctls, which KVM serialises.
    public let fd: Int32
    public let id: Int
    let run: UnsafeMutablePointer<kvm_run>
    private let mapping: UnsafeMutableRawPointer
    private let mmapSize: Int

    init(fd: Int32, id: Int, mmapSize: Int) throws {
        let pointer = mmap(nil, mmapSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let pointer, pointer != MAP_FAILED else { throw KVMError(.mmap(bytes: mmapSize)) }
        self.fd = fd
        self.id = id
        self.mapping = pointer
        self.mmapSize = mmapSize
        self.run = ckvm_run_ptr(pointer)
    }

    deinit {
        munmap(mapping, mmapSize)
        close(fd)
    }

    /// Corresponds to `KVM_RUN`. Returns false when interrupted (EINTR: a kick), true on a VM exit.
    public func runOnce() throws -> Bool {
        if ckvm_run(fd) == 0 { return true }
        if errno == EINTR || errno == EAGAIN { return false }
        throw KVMError(.run(vcpu: id))
    }

    /// Makes the next or current `KVM_RUN` return at once (set before signalling the vCPU thread).
    public func requestImmediateExit(_ value: Bool) {
        ckvm_set_immediate_exit(run, value ? 1 : 0)
    }

    public var exitReason: UInt32 { ckvm_exit_reason(run) }

    /// The data area of a `KVM_EXIT_IO` exit: `count` items of `size` bytes each.
    var ioData: UnsafeMutableRawBufferPointer {
        let offset = Int(ckvm_io_data_offset(run))
        let bytes = Int(ckvm_io_size(run)) * Int(ckvm_io_count(run))
        precondition(offset + bytes <= mmapSize, "KVM reported IO data outside the kvm_run mapping")
        return UnsafeMutableRawBufferPointer(start: mapping + offset, count: bytes)
    }

    /// Corresponds to `KVM_GET_REGS`.
    public func registers() throws -> kvm_regs { try get(kvm_regs(), .getRegisters(vcpu: id), ckvm_get_regs) }

    /// Corresponds to `KVM_SET_REGS`.
    public func setRegisters(_ regs: kvm_regs) throws { try set(regs, .setRegisters(vcpu: id), ckvm_set_regs) }

    /// Corresponds to `KVM_GET_SREGS`.
    public func specialRegisters() throws -> kvm_sregs {
        try get(kvm_sregs(), .getSpecialRegisters(vcpu: id), ckvm_get_sregs)
    }

    /// Corresponds to `KVM_SET_SREGS`.
    public func setSpecialRegisters(_ sregs: kvm_sregs) throws {
        try set(sregs, .setSpecialRegisters(vcpu: id), ckvm_set_sregs)
    }

    /// One vCPU state ioctl that fills a struct (`empty` is where it starts).
    private func get<State>(
        _ empty: State, _ operation: @autoclosure () -> KVMError.Operation,
        _ ioctl: (Int32, UnsafeMutablePointer<State>?) -> Int32
    ) throws -> State {
        var state = empty
        try check(operation()) { ioctl(fd, &state) }
        return state
    }

    /// One vCPU state ioctl that takes a struct.
    private func set<State>(
        _ state: State, _ operation: @autoclosure () -> KVMError.Operation,
        _ ioctl: (Int32, UnsafePointer<State>?) -> Int32
    ) throws {
        try check(operation()) { withUnsafePointer(to: state) { ioctl(fd, $0) } }
    }

    /// Corresponds to `KVM_SET_FPU`: x87 control word and MXCSR at their reset values.
    public func resetFPU() throws {
        var fpu = kvm_fpu()
        fpu.fcw = 0x37f
        fpu.mxcsr = 0x1f80
        try set(fpu, .setFPU(vcpu: id), ckvm_set_fpu)
    }

    /// Corresponds to `KVM_SET_CPUID2`.
    public func setCPUID(_ entries: [kvm_cpuid_entry2]) throws {
        let list = KVMFlexibleArray<kvm_cpuid2, kvm_cpuid_entry2>(
            capacity: entries.count, count: \.nent, elements: entries)
        try check(.setCPUID(vcpu: id)) { ckvm_set_cpuid2(fd, list.header) }
    }

    /// Programs LINT0 as ExtINT and LINT1 as NMI (corresponds to `KVM_GET_LAPIC` + `KVM_SET_LAPIC`),
    /// the wiring firmware leaves for an OS that starts in virtual-wire mode.
    public func configureLocalInterrupts() throws {
        var lapic = try get(kvm_lapic_state(), .getLAPIC(vcpu: id), ckvm_get_lapic)
        withUnsafeMutableBytes(of: &lapic.regs) { regs in
            func setDeliveryMode(offset: Int, mode: UInt32) {
                var value = regs.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
                value = (value & ~0x700) | (mode << 8)
                regs.storeBytes(of: value, toByteOffset: offset, as: UInt32.self)
            }
            setDeliveryMode(offset: 0x350, mode: 7)  // LVT LINT0: ExtINT
            setDeliveryMode(offset: 0x360, mode: 4)  // LVT LINT1: NMI
        }
        try set(lapic, .setLAPIC(vcpu: id), ckvm_set_lapic)
    }

    /// The local APIC's IDs, destination model and enable bits (`KVM_GET_LAPIC` and
    /// `KVM_GET_MSRS` of IA32_APIC_BASE); call on the vCPU's thread, between runs.
    public func localAPICIdentity() throws -> LocalAPICIdentity {
        var lapic = try get(kvm_lapic_state(), .getLAPIC(vcpu: id), ckvm_get_lapic)
        var apicBase: UInt64 = 0
        let apicBaseMSR: UInt32 = 0x1B
        guard ckvm_get_msr(fd, apicBaseMSR, &apicBase) == 1 else {
            throw KVMError(.getMSR(vcpu: id, index: apicBaseMSR))
        }
        return withUnsafeBytes(of: &lapic.regs) { LocalAPICIdentity(registers: $0, apicBase: apicBase) }
    }

    /// Corresponds to `KVM_SET_MSRS` of one MSR.
    public func setMSR(_ index: UInt32, to value: UInt64) throws {
        guard ckvm_set_msr(fd, index, value) == 1 else { throw KVMError(.setMSR(vcpu: id, index: index)) }
    }

    /// The MSRs firmware leaves set for an OS, as QEMU with SeaBIOS does: MTRRs on with write-back
    /// as the default type, and fast strings. KVM resets MTRRdefType to 0 (MTRRs off), and Linux
    /// then turns PAT off too ("MTRRs disabled, skipping PAT initialization"), unlike on QEMU.
    /// With NPT, KVM ignores guest MTRRs, so memory types are the guest's PAT alone either way.
    public func setFirmwareMSRs() throws {
        try setMSR(0x2FF, to: 0x806)  // IA32_MTRR_DEF_TYPE: enabled (bit 11), default type WB (6)
        try setMSR(0x1A0, to: 0x1)  // IA32_MISC_ENABLE: fast strings
    }

    /// Corresponds to `KVM_GET_STATS_FD` on this vCPU.
    public func statisticsReader() throws -> KVMStatisticsReader {
        let statsfd = try check(.getStatsFD) { ckvm_get_stats_fd(fd) }
        return try KVMStatisticsReader(fd: statsfd)
    }
}
