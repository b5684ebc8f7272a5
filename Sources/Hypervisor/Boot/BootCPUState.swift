import CKVM

/// The register state a Linux entry point expects, and the GDT and page tables behind it.
public enum BootCPUState {
    /// GDT slots: 0 null, 1 unused, 2 (0x10) 64-bit code, 3 (0x18) data, 4 (0x20) TSS, 5 (0x28) 32-bit code.
    /// 0x10/0x18 are the selectors the Linux 64-bit boot protocol names (__BOOT_CS/__BOOT_DS).
    static let gdt: [UInt64] = [
        0,
        0,
        0x00AF_9B00_0000_FFFF,  // code, long mode (L=1), present, DPL0
        0x00CF_9300_0000_FFFF,  // data, 4 GiB flat, read/write
        0x0080_8B00_0000_FFFF,  // 32-bit TSS (busy)
        0x00CF_9B00_0000_FFFF,  // code, 32-bit (D=1), 4 GiB flat
    ]
    static let code64Selector: UInt16 = 0x10
    static let dataSelector: UInt16 = 0x18
    static let tssSelector: UInt16 = 0x20
    static let code32Selector: UInt16 = 0x28

    /// Expands a GDT descriptor into KVM's unpacked segment form.
    static func segment(selector: UInt16) -> kvm_segment {
        let entry = gdt[Int(selector >> 3)]
        let limitLow = entry & 0xFFFF
        let limitHigh = (entry >> 48) & 0xF
        let granularity = (entry >> 55) & 1
        var limit = UInt32(limitLow | (limitHigh << 16))
        if granularity == 1 { limit = (limit << 12) | 0xFFF }
        var segment = kvm_segment()
        segment.base = ((entry >> 16) & 0xFF_FFFF) | (((entry >> 56) & 0xFF) << 24)
        segment.limit = limit
        segment.selector = selector
        segment.type = UInt8((entry >> 40) & 0xF)
        segment.s = UInt8((entry >> 44) & 1)
        segment.dpl = UInt8((entry >> 45) & 3)
        segment.present = UInt8((entry >> 47) & 1)
        segment.avl = UInt8((entry >> 52) & 1)
        segment.l = UInt8((entry >> 53) & 1)
        segment.db = UInt8((entry >> 54) & 1)
        segment.g = UInt8(granularity)
        return segment
    }

    static func writeGDT(to memory: GuestMemory) throws {
        for (index, entry) in gdt.enumerated() {
            try memory.store(entry, at: X86Layout.gdtAddress + UInt64(index * 8))
        }
    }

    /// Identity-maps the first 4 GiB with 2 MiB pages (PML4 -> PDPT -> 4 page directories).
    static func writeIdentityPageTables(to memory: GuestMemory) throws {
        let pml4 = X86Layout.pml4Address
        let pdpt = pml4 + 0x1000
        let firstDirectory = pml4 + 0x2000
        try memory.zero(at: pml4, length: 0x6000)
        try memory.store(pdpt | 0x3, at: pml4)  // present, writable
        for directory in 0..<UInt64(4) {
            let directoryAddress = firstDirectory + directory * 0x1000
            try memory.store(directoryAddress | 0x3, at: pdpt + directory * 8)
            for entry in 0..<UInt64(512) {
                let physical = (directory * 512 + entry) << 21
                try memory.store(physical | 0x83, at: directoryAddress + entry * 8)  // present, writable, 2 MiB page
            }
        }
    }

    /// Long mode with paging on the identity map, CS=0x10 (64-bit), data segments 0x18: the state
    /// the Linux 64-bit boot protocol requires at `startup_64`.
    public static func enterLongMode(_ vcpu: VCPU, memory: GuestMemory, entry: UInt64, zeroPage: UInt64) throws {
        try writeGDT(to: memory)
        try writeIdentityPageTables(to: memory)
        var sregs = try vcpu.specialRegisters()
        setFlatSegments(&sregs, code: code64Selector)
        sregs.cr3 = X86Layout.pml4Address
        sregs.cr4 |= 0x20  // PAE
        sregs.cr0 |= 0x8000_0011  // PG | ET | PE
        sregs.efer |= 0x500  // LME | LMA
        try vcpu.setSpecialRegisters(sregs)
        try start(vcpu, at: entry) { $0.rsi = zeroPage }
    }

    /// 32-bit protected mode, paging off, flat segments, EBX = start info: the PVH entry state.
    public static func enterPVH(_ vcpu: VCPU, memory: GuestMemory, entry: UInt64, startInfo: UInt64) throws {
        try writeGDT(to: memory)
        var sregs = try vcpu.specialRegisters()
        setFlatSegments(&sregs, code: code32Selector)
        sregs.cr0 = (sregs.cr0 | 0x11) & ~0x8000_0000  // PE | ET, no paging
        sregs.cr4 = 0
        sregs.efer = 0
        try vcpu.setSpecialRegisters(sregs)
        try start(vcpu, at: entry) { $0.rbx = startInfo }
    }

    /// General registers zero but RFLAGS' fixed bit, RIP at `entry` and the protocol's pointer
    /// (set by `argument`); the FPU as after reset.
    private static func start(_ vcpu: VCPU, at entry: UInt64, argument: (inout kvm_regs) -> Void) throws {
        var regs = kvm_regs()
        regs.rflags = 0x2
        regs.rip = entry
        argument(&regs)
        try vcpu.setRegisters(regs)
        try vcpu.resetFPU()
    }

    static func setFlatSegments(_ sregs: inout kvm_sregs, code: UInt16) {
        let data = segment(selector: dataSelector)
        sregs.cs = segment(selector: code)
        sregs.ds = data
        sregs.es = data
        sregs.fs = data
        sregs.gs = data
        sregs.ss = data
        sregs.tr = segment(selector: tssSelector)
        sregs.gdt.base = X86Layout.gdtAddress
        sregs.gdt.limit = UInt16(gdt.count * 8 - 1)
    }
}
