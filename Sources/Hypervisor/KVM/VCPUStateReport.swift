import CKVM

/// What one vCPU looked like when the machine stopped: registers, run state, the local APIC's
/// interrupt state and its last exits to userspace. hvctl prints it after a triple fault, a
/// failure or a stop by signal (a hang the user ended), to tell where the guest was.
public struct VCPUStateReport: Sendable {
    public let vcpu: Int
    /// Lines to print, the first naming the vCPU.
    public let lines: [String]

    /// Reads the vCPU's state; call on its thread once it has left KVM_RUN for good.
    public static func capture(_ vcpu: VCPU, history: ExitHistory, now: UInt64 = MonotonicClock.now())
        -> VCPUStateReport
    {
        func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
        var lines: [String] = []
        var mpState = kvm_mp_state()
        let runState = ckvm_get_mp_state(vcpu.fd, &mpState) == 0 ? Self.describe(mpState: mpState.mp_state) : "?"
        lines.append("vcpu\(vcpu.id): \(runState), \(history.total) exits to userspace")
        if let r = try? vcpu.registers() {
            lines.append(
                "  RIP \(hex(r.rip)) RSP \(hex(r.rsp)) RFLAGS \(hex(r.rflags)) RAX \(hex(r.rax)) RBX \(hex(r.rbx)) "
                    + "RCX \(hex(r.rcx)) RDX \(hex(r.rdx)) RSI \(hex(r.rsi)) RDI \(hex(r.rdi)) RBP \(hex(r.rbp))")
        }
        if let s = try? vcpu.specialRegisters() {
            lines.append(
                "  CS \(hex(UInt64(s.cs.selector))) CR0 \(hex(s.cr0)) CR2 \(hex(s.cr2)) CR3 \(hex(s.cr3)) "
                    + "CR4 \(hex(s.cr4)) EFER \(hex(s.efer)) APIC base \(hex(s.apic_base))")
        }
        var lapic = kvm_lapic_state()
        if ckvm_get_lapic(vcpu.fd, &lapic) == 0 {
            lines.append("  local APIC: " + withUnsafeBytes(of: &lapic.regs) { Self.describe(localAPIC: $0) })
        }
        lines.append("  last exits to userspace, oldest first:")
        lines += history.describe(now: now).map { "    " + $0 }
        return VCPUStateReport(vcpu: vcpu.id, lines: lines)
    }

    static func describe(mpState: UInt32) -> String {
        switch Int32(bitPattern: mpState) {
        case KVM_MP_STATE_RUNNABLE: return "runnable"
        case KVM_MP_STATE_UNINITIALIZED: return "uninitialized (waiting for INIT)"
        case KVM_MP_STATE_INIT_RECEIVED: return "INIT received (waiting for SIPI)"
        case KVM_MP_STATE_HALTED: return "halted"
        case let other: return "run state \(other)"
        }
    }

    /// TPR, the highest vector in service and requested, the timer's mode and counts.
    static func describe(localAPIC registers: UnsafeRawBufferPointer) -> String {
        func register(_ offset: Int) -> UInt32 {
            offset + 4 <= registers.count ? registers.loadUnaligned(fromByteOffset: offset, as: UInt32.self) : 0
        }
        /// The highest set bit of the 256-bit register at `base` (eight 32-bit words 16 bytes apart).
        func highestVector(_ base: Int) -> String {
            for word in (0..<8).reversed() {
                let bits = register(base + word * 16)
                if bits != 0 { return "0x" + String(word * 32 + 31 - bits.leadingZeroBitCount, radix: 16) }
            }
            return "none"
        }
        func hex(_ value: UInt32) -> String { "0x" + String(value, radix: 16) }
        return
            "ID \(hex(register(0x20) >> 24)) TPR \(hex(register(0x80))) ISR \(highestVector(0x100)) "
            + "IRR \(highestVector(0x200)) SVR \(hex(register(0xF0))) LVT timer \(hex(register(0x320))) "
            + "initial count \(register(0x380)) current count \(register(0x390))"
    }
}
