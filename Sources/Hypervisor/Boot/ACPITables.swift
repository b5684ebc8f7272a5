/// Minimal ACPI 6 tables for a hardware-reduced platform: RSDP, XSDT, FADT, DSDT and MADT.
///
/// The MADT lists one local APIC per vCPU and the IOAPIC, so Linux brings up its APs itself.
/// The FADT's sleep control register and reset register are I/O ports handled by `PowerControl`,
/// which is how guest `poweroff` and `reboot` reach hvctl; the DSDT declares \_S5, the devices
/// and the power button that `Machine.pressPowerButton` raises through a Generic Event Device.
public enum ACPITables {
    public static let oemID = Array("SIDCOR".utf8)

    /// Writes all tables at `X86Layout.acpiTablesAddress` and returns the RSDP's address.
    @discardableResult
    public static func write(to memory: GuestMemory, vcpuCount: Int) throws -> UInt64 {
        let rsdpAddress = X86Layout.acpiTablesAddress
        let xsdtAddress = rsdpAddress + 0x40
        let dsdt = makeDSDT()
        let madt = makeMADT(vcpuCount: vcpuCount)
        let dsdtAddress = xsdtAddress + 0x40
        let fadtAddress = align(dsdtAddress + UInt64(dsdt.count))
        let madtAddress = align(fadtAddress + 276)
        let fadt = makeFADT(dsdtAddress: dsdtAddress)
        let xsdt = table("XSDT", revision: 1, body: LittleEndian.bytes(fadtAddress) + LittleEndian.bytes(madtAddress))
        try memory.write(makeRSDP(xsdtAddress: xsdtAddress), at: rsdpAddress)
        try memory.write(xsdt, at: xsdtAddress)
        try memory.write(dsdt, at: dsdtAddress)
        try memory.write(fadt, at: fadtAddress)
        try memory.write(madt, at: madtAddress)
        return rsdpAddress
    }

    static func align(_ address: UInt64) -> UInt64 { (address + 15) & ~15 }

    static func makeRSDP(xsdtAddress: UInt64) -> [UInt8] {
        var rsdp =
            Array("RSD PTR ".utf8) + [0] + oemID + [2] + LittleEndian.bytes(UInt32(0)) + LittleEndian.bytes(UInt32(36))
            + LittleEndian.bytes(xsdtAddress) + [0, 0, 0, 0]
        rsdp[8] = checksum(rsdp[0..<20])
        rsdp[32] = checksum(rsdp[0..<36])
        return rsdp
    }

    /// The DSDT's AML: `\_S5_` (sleep type 5 is what `PowerControl` treats as power off), COM1,
    /// the PCI host bridge and the power button.
    static func makeDSDT() -> [UInt8] {
        let s5: [UInt8] =
            [0x08] + Array("_S5_".utf8) + [0x12, 0x07, 0x04, 0x0A, PowerControl.poweroffSleepType, 0x00, 0x00, 0x00]
        return table(
            "DSDT", revision: 2,
            body: s5 + scope("_SB_", serialDevice() + pciRootBridge() + powerButton() + genericEventDevice()))
    }

    /// `Device (COM1) { _HID PNP0501, _UID 1, _CRS { IO 0x3F8-0x3FF, IRQ 4 } }`.
    /// A hardware-reduced platform has no legacy PIC, so Linux maps ISA IRQ 4 only for a device
    /// that declares it; without this the 8250 driver cannot request its interrupt.
    static func serialDevice() -> [UInt8] {
        let base = UInt16(Serial16550.com1Base)
        let resources: [UInt8] =
            // IO, 16-bit decode, 8 ports
            [0x47, 0x01] + LittleEndian.bytes(base) + LittleEndian.bytes(base) + [0x00, 0x08]
            + [0x22] + LittleEndian.bytes(UInt16(1) << Serial16550.com1IRQ)  // IRQNoFlags: edge, active high
        return device("COM1", hid: eisaID(0x0501), uid: 1, resources: resources)
    }

    /// `Device (PCI0)`: the host bridge of bus 0 (PNP0A03) with its windows: the I/O ports around
    /// 0xCF8-0xCFF and the 32-bit MMIO hole where `PCIRoot` places BARs. Linux enumerates bus 0
    /// through this device and only assigns BARs inside these windows.
    static func pciRootBridge() -> [UInt8] {
        func wordAddress(type: UInt8, typeFlags: UInt8, minimum: UInt16, maximum: UInt16) -> [UInt8] {
            // Word Address Space Descriptor: producer, fixed min and max.
            [0x88, 0x0D, 0x00, type, 0x0C, typeFlags] + LittleEndian.bytes(UInt16(0)) + LittleEndian.bytes(minimum)
                + LittleEndian.bytes(maximum) + LittleEndian.bytes(UInt16(0))
                + LittleEndian.bytes(UInt16(maximum - minimum &+ 1))
        }
        let windowStart = UInt32(X86Layout.mmioHoleStart)
        let windowEnd = UInt32(X86Layout.ioapicAddress - 1)
        let memory: [UInt8] =
            [0x87, 0x17, 0x00, 0x00, 0x0C, 0x01] + LittleEndian.bytes(UInt32(0)) + LittleEndian.bytes(windowStart)
            + LittleEndian.bytes(windowEnd)
            // (DWord memory, read/write, non-cacheable)
            + LittleEndian.bytes(UInt32(0)) + LittleEndian.bytes(windowEnd - windowStart + 1)
        let resources =
            wordAddress(type: 2, typeFlags: 0, minimum: 0, maximum: 0)  // bus 0
            + [0x47, 0x01, 0xF8, 0x0C, 0xF8, 0x0C, 0x01, 0x08]  // IO 0xCF8-0xCFF (configuration mechanism #1)
            + wordAddress(type: 1, typeFlags: 3, minimum: 0x0000, maximum: 0x0CF7)
            + wordAddress(type: 1, typeFlags: 3, minimum: 0x0D00, maximum: 0xFFFF)
            + memory
        return device("PCI0", hid: eisaID(0x0A03), uid: 0, resources: resources)
    }

    /// `Device (PWRB) { _HID PNP0C0C }`: a control-method power button, which Linux's button
    /// driver turns into a KEY_POWER input event when notified (0x80, "pressed").
    static func powerButton() -> [UInt8] {
        device("PWRB", hid: eisaID(0x0C0C), uid: 0)
    }

    /// `Device (GED0)`: the Generic Event Device (ACPI0013), how a hardware-reduced platform
    /// raises events: an edge on `PowerControl.powerButtonGSI` makes Linux run its `_EVT`, which
    /// notifies `\_SB.PWRB` that the power button was pressed (the only event it carries).
    static func genericEventDevice() -> [UInt8] {
        // Extended Interrupt Descriptor: consumer, edge, active high, exclusive, one interrupt.
        let interrupt: [UInt8] = [0x89, 0x06, 0x00, 0x03, 0x01] + LittleEndian.bytes(PowerControl.powerButtonGSI)
        // Method (_EVT, 1) { Notify (\_SB.PWRB, 0x80) }
        let notify: [UInt8] = [0x86, 0x5C, 0x2E] + Array("_SB_PWRB".utf8) + [0x0A, 0x80]
        let method = Array("_EVT".utf8) + [0x01] + notify
        let evt: [UInt8] = [0x14] + packageLength(method.count) + method
        let hid: [UInt8] = [0x0D] + Array("ACPI0013".utf8) + [0x00]
        return device("GED0", hid: hid, uid: 0, resources: interrupt, extra: evt)
    }

    /// `Device (NAME) { _HID, _UID, [_CRS], extra }`; `resources` without the end tag.
    static func device(_ name: String, hid: [UInt8], uid: UInt8, resources: [UInt8]? = nil, extra: [UInt8] = [])
        -> [UInt8]
    {
        // _UID 0 and 1 have one-byte encodings (ZeroOp, OneOp); others a ByteConst.
        let uidValue: [UInt8] = uid <= 1 ? [uid] : [0x0A, uid]
        var body = Array(name.utf8) + [0x08] + Array("_HID".utf8) + hid + [0x08] + Array("_UID".utf8) + uidValue
        if let resources {
            let template = resources + [0x79, 0x00]  // end tag
            let buffer: [UInt8] = [0x0A, UInt8(template.count)] + template
            body += [0x08] + Array("_CRS".utf8) + [0x11] + packageLength(buffer.count) + buffer
        }
        body += extra
        return [0x5B, 0x82] + packageLength(body.count) + body
    }

    /// `EisaId ("PNPxxxx")` for a PNP product number: the compressed "PNP" then the product.
    static func eisaID(_ product: UInt16) -> [UInt8] {
        [0x0C, 0x41, 0xD0, UInt8(product >> 8), UInt8(product & 0xFF)]
    }

    static func scope(_ name: String, _ body: [UInt8]) -> [UInt8] {
        let content = Array(name.utf8) + body
        return [0x10] + packageLength(content.count) + content
    }

    /// AML PkgLength for `count` bytes that follow it (the encoding counts its own bytes).
    static func packageLength(_ count: Int) -> [UInt8] {
        if count + 1 < 0x40 { return [UInt8(count + 1)] }
        let total = count + 2
        precondition(total < 0x1000, "AML package too large for a two-byte PkgLength")
        return [UInt8(0x40 | (total & 0xF)), UInt8(total >> 4)]
    }

    static func makeFADT(dsdtAddress: UInt64) -> [UInt8] {
        var body = [UInt8](repeating: 0, count: 276 - 36)
        func put(_ bytes: [UInt8], at offset: Int) {
            body.replaceSubrange((offset - 36)..<(offset - 36 + bytes.count), with: bytes)
        }
        put(LittleEndian.bytes(UInt32(dsdtAddress)), at: 40)
        // IAPC_BOOT_ARCH: VGA not present, ASPM not to be enabled, no CMOS RTC. The i8042 bit stays
        // clear so Linux does not probe a keyboard controller; MSI stays allowed.
        put(LittleEndian.bytes(UInt16(1 << 2 | 1 << 4 | 1 << 5)), at: 109)
        // Flags: WBINVD, RESET_REG_SUP, HW_REDUCED_ACPI.
        put(LittleEndian.bytes(UInt32(1 << 0 | 1 << 10 | 1 << 20)), at: 112)
        put(ioPort(PowerControl.resetPort), at: 116)
        put([PowerControl.resetValue], at: 128)
        put([3], at: 131)  // FADT minor version: 6.3
        put(LittleEndian.bytes(dsdtAddress), at: 140)
        put(ioPort(PowerControl.sleepControlPort), at: 244)
        put(ioPort(PowerControl.sleepStatusPort), at: 256)
        put(Array("SIDECORE".utf8), at: 268)
        return table("FACP", revision: 6, body: body)
    }

    static func makeMADT(vcpuCount: Int) -> [UInt8] {
        // The local APICs' address, then PCAT_COMPAT: 8259s present.
        var body = LittleEndian.bytes(UInt32(X86Layout.lapicAddress)) + LittleEndian.bytes(UInt32(1))
        for id in 0..<vcpuCount {
            body += [0, 8, UInt8(id), UInt8(id)] + LittleEndian.bytes(UInt32(1))  // Processor Local APIC, enabled
        }
        // IOAPIC 0 at GSI 0.
        body += [1, 12, 0, 0] + LittleEndian.bytes(UInt32(X86Layout.ioapicAddress)) + LittleEndian.bytes(UInt32(0))
        return table("APIC", revision: 5, body: body)
    }

    /// A Generic Address Structure for a one-byte I/O port.
    static func ioPort(_ port: UInt16) -> [UInt8] {
        [1, 8, 0, 1] + LittleEndian.bytes(UInt64(port))
    }

    static func table(_ signature: String, revision: UInt8, body: [UInt8]) -> [UInt8] {
        let length = UInt32(36 + body.count)
        var bytes =
            Array(signature.utf8) + LittleEndian.bytes(length) + [revision, 0] + oemID + Array("SIDECORE".utf8)
            + LittleEndian.bytes(UInt32(1)) + Array("SCVM".utf8) + LittleEndian.bytes(UInt32(1)) + body
        bytes[9] = checksum(bytes[...])
        return bytes
    }

    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt8 {
        0 &- bytes.reduce(0, &+)
    }

}
