/// Where boot structures live in guest-physical memory, and the guest's RAM map.
///
/// Everything below 1 MiB sits in pages Linux treats as firmware-owned or reclaims
/// after boot; the kernel itself is loaded at 1 MiB (bzImage) or at its own physical
/// addresses (PVH).
public enum X86Layout {
    public static let gdtAddress: UInt64 = 0x500
    public static let pvhStartInfoAddress: UInt64 = 0x6000
    public static let pvhMemoryMapAddress: UInt64 = 0x6100
    public static let pvhModuleListAddress: UInt64 = 0x6F00
    public static let zeroPageAddress: UInt64 = 0x7000
    /// PML4 at 0x9000, PDPT at 0xA000, four page directories at 0xB000-0xEFFF: 4 GiB identity-mapped.
    public static let pml4Address: UInt64 = 0x9000
    public static let commandLineAddress: UInt64 = 0x20000
    public static let commandLineCapacity: Int = 0x10000
    /// End of conventional memory; the EBDA-sized hole up to 640 KiB stays reserved.
    public static let conventionalMemoryEnd: UInt64 = 0x9FC00
    /// ACPI tables live in the BIOS area, where Linux also scans for the RSDP.
    public static let acpiTablesAddress: UInt64 = 0xE0000
    public static let biosAreaEnd: UInt64 = 0x100000
    public static let kernelLoadAddress: UInt64 = 0x100000
    /// Start of the 32-bit MMIO hole (IOAPIC, LAPIC, later PCI BARs); RAM above it moves past 4 GiB.
    public static let mmioHoleStart: UInt64 = 0xC000_0000
    public static let highMemoryStart: UInt64 = 0x1_0000_0000
    public static let ioapicAddress: UInt64 = 0xFEC0_0000
    public static let lapicAddress: UInt64 = 0xFEE0_0000
    /// Used only by VMX's real-mode support: three pages for the TSS and one for the identity map.
    public static let tssAddress: UInt64 = 0xFFFB_D000
    public static let identityMapAddress: UInt64 = 0xFFFB_C000

    /// Guest RAM ranges for `memoryInBytes` of RAM: below the MMIO hole, the rest above 4 GiB.
    public static func ramRanges(memoryInBytes: UInt64) -> [(guestAddress: UInt64, sizeInBytes: UInt64)] {
        if memoryInBytes <= mmioHoleStart { return [(0, memoryInBytes)] }
        return [(0, mmioHoleStart), (highMemoryStart, memoryInBytes - mmioHoleStart)]
    }
}

/// One entry of the BIOS E820 memory map (also PVH's memory map).
public struct E820Entry: Equatable {
    public enum Kind: UInt32 { case ram = 1, reserved = 2, acpi = 3 }
    public let address: UInt64
    public let sizeInBytes: UInt64
    public let kind: Kind

    /// The memory map shown to the guest: RAM minus the legacy holes below 1 MiB.
    public static func map(for memory: GuestMemory) -> [E820Entry] {
        var entries = [
            E820Entry(address: 0, sizeInBytes: X86Layout.conventionalMemoryEnd, kind: .ram),
            E820Entry(
                address: X86Layout.conventionalMemoryEnd, sizeInBytes: 0xA0000 - X86Layout.conventionalMemoryEnd,
                kind: .reserved),
            E820Entry(
                address: X86Layout.acpiTablesAddress, sizeInBytes: X86Layout.biosAreaEnd - X86Layout.acpiTablesAddress,
                kind: .reserved),
        ]
        for region in memory.regions {
            let start = max(region.guestAddress, X86Layout.biosAreaEnd)
            if region.endAddress > start {
                entries.append(E820Entry(address: start, sizeInBytes: region.endAddress - start, kind: .ram))
            }
        }
        return entries
    }
}
