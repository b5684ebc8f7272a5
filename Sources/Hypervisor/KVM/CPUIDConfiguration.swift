import CKVM

/// Derives each vCPU's CPUID from `KVM_GET_SUPPORTED_CPUID` with one consistent topology:
/// one socket of `vcpuCount` cores, one thread each, APIC ID = vCPU index. Where the supported
/// list and QEMU's `-cpu host` differ, this follows QEMU (nested/compare-machines shows the rest).
public enum CPUIDConfiguration {
    static let significantIndex = UInt32(KVM_CPUID_FLAG_SIGNIFCANT_INDEX)
    /// KVM's paravirtual feature leaf.
    static let kvmFeatures: UInt32 = 0x4000_0001
    /// KVM_FEATURE_ASYNC_PF_VMEXIT: async page faults for the guest's own nested guests.
    static let asyncPageFaultVMExit: UInt32 = 1 << 10

    /// `tscDeadlineTimer`: offer the TSC deadline timer in leaf 1 (ECX[24]), which
    /// KVM_GET_SUPPORTED_CPUID leaves to the VMM because it depends on the in-kernel LAPIC; QEMU
    /// offers it when KVM_CAP_TSC_DEADLINE_TIMER says the LAPIC has it, and so does Machine. It was
    /// withheld for a while after hangs in the nested rig that turned out to be the rig's
    /// (the L2-state hang, seen without the timer and under QEMU; docs/smp-reliability.md).
    /// Withholding it is what made hvctl's 2-vCPU Linux guests fail more often than QEMU's there
    /// (22 failures in 109 boots against 10 in 105); offered, a 6-run stress on 2026-12-06 had
    /// hvctl's guests fail 0 times in 44 boots and QEMU's 6 times in 43.
    public static func entries(
        from supported: [kvm_cpuid_entry2], vcpuID: Int, vcpuCount: Int, tscDeadlineTimer: Bool = false
    ) -> [kvm_cpuid_entry2] {
        let apicID = UInt32(vcpuID)
        let count = UInt32(vcpuCount)
        // Bits of the APIC ID that number cores within the package.
        let coreBits = UInt32(vcpuCount <= 1 ? 0 : (Int.bitWidth - (vcpuCount - 1).leadingZeroBitCount))
        var result: [kvm_cpuid_entry2] = []
        var hasExtendedTopology = false
        for var entry in supported {
            switch entry.function {
            case 0x1:
                entry.ebx = (entry.ebx & 0xFFFF) | (min(count, 255) << 16) | (apicID << 24)
                entry.ecx |= 1 << 31  // running under a hypervisor
                entry.ecx &= ~(1 << 5)  // no VMX: Sidecore offers no nested virtualization
                if vcpuCount > 1 { entry.edx |= 1 << 28 }  // HTT: the count in EBX[23:16] is valid
                if tscDeadlineTimer { entry.ecx |= 1 << 24 }
            case 0x4:
                // Only a subleaf that describes a cache (type in EAX[4:0]); AMD's are all empty.
                if entry.eax & 0x1F != 0 { entry.eax = (entry.eax & 0x03FF_FFFF) | ((count - 1) << 26) }
            case kvmFeatures:
                // QEMU's default leaves it off; it is for guests that run guests of their own.
                entry.eax &= ~asyncPageFaultVMExit
            case 0xB, 0x1F:
                hasExtendedTopology = true
                continue  // rebuilt below
            case 0x8000_0001:
                entry.ecx &= ~(1 << 22)  // no TOPOEXT: leaf 0x8000001E would describe the host
                // No SVM: a guest that believes it has SVM writes SVM MSRs on emergency restart
                // (panic), which it cannot do here, and never reaches the reset register.
                entry.ecx &= ~(1 << 2)
            case 0x8000_0008:
                entry.ecx = (coreBits << 12) | (count - 1)
            default:
                break
            }
            result.append(entry)
        }
        if hasExtendedTopology || vcpuCount > 1 {
            // Leaf 0xB: level 0 = SMT (1 thread), level 1 = core (vcpuCount), then the terminating level.
            let levels: [(eax: UInt32, ebx: UInt32, type: UInt32)] = [(0, 1, 1), (coreBits, count, 2), (0, 0, 0)]
            for (index, level) in levels.enumerated() {
                var entry = kvm_cpuid_entry2()
                entry.function = 0xB
                entry.index = UInt32(index)
                entry.flags = significantIndex
                entry.eax = level.eax
                entry.ebx = level.ebx
                entry.ecx = (level.type << 8) | UInt32(index)
                entry.edx = apicID
                result.append(entry)
            }
            raiseBasicLeafLimit(in: &result, to: 0xB)
        }
        return result
    }

    /// Makes leaf 0's maximum basic leaf cover `leaf`, so the guest looks at it.
    static func raiseBasicLeafLimit(in entries: inout [kvm_cpuid_entry2], to leaf: UInt32) {
        if let index = entries.firstIndex(where: { $0.function == 0 }), entries[index].eax < leaf {
            entries[index].eax = leaf
        }
    }
}
