/// The platform's power and reset controls: the ACPI sleep control and reset registers named in
/// the FADT, and the i8042 controller's CPU reset line (command 0xFE on port 0x64).
///
/// Linux powers off by writing SLP_TYP=5|SLP_EN to the sleep control register, and reboots through
/// the ACPI reset register, falling back to the i8042 reset; either reaches `onEvent` once.
public final class PowerControl: Sendable {
    public enum Event: Equatable, Sendable { case powerOff, reset }

    public static let sleepControlPort: UInt16 = 0x600
    public static let sleepStatusPort: UInt16 = 0x601
    public static let resetPort: UInt16 = 0x604
    public static let resetValue: UInt8 = 0x06
    public static let poweroffSleepType: UInt8 = 5
    public static let i8042DataPort: UInt16 = 0x60
    public static let i8042CommandPort: UInt16 = 0x64
    /// The IOAPIC input of the power button's Generic Event Device (ACPITables); unused by COM1 (4)
    /// and by virtio, whose interrupts are MSI-X.
    public static let powerButtonGSI: UInt32 = 5

    private let onEvent: @Sendable (Event) -> Void

    public init(onEvent: @escaping @Sendable (Event) -> Void) {
        self.onEvent = onEvent
    }

    /// The ACPI registers: sleep control at +0, sleep status at +1, reset at +4.
    public var acpiRegisters: BusDevice { Ports(owner: self, block: .acpi) }
    /// Ports 0x60-0x64 of the i8042: status reads as "idle", command 0xFE resets.
    public var i8042: BusDevice { Ports(owner: self, block: .i8042) }

    /// Either block of ports. Every read gives 0: no sleep has happened, and the i8042's output
    /// and input buffers are empty, so Linux's kb_wait() returns at once.
    private final class Ports: BusDevice, Sendable {
        enum Block { case acpi, i8042 }
        let owner: PowerControl
        let block: Block
        init(owner: PowerControl, block: Block) {
            self.owner = owner
            self.block = block
        }

        func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
            data.initializeMemory(as: UInt8.self, repeating: 0)
        }

        func write(offset: UInt64, data: UnsafeRawBufferPointer) {
            guard let value = data.first, let event = event(offset: offset, value: value) else { return }
            owner.onEvent(event)
        }

        private func event(offset: UInt64, value: UInt8) -> Event? {
            switch block {
            case .acpi where offset == 0:
                let sleepEnable = value & 0x20 != 0
                return sleepEnable && (value >> 2) & 0x7 == PowerControl.poweroffSleepType ? .powerOff : nil
            case .acpi:
                let reset = UInt64(PowerControl.resetPort - PowerControl.sleepControlPort)
                return offset == reset && value == PowerControl.resetValue ? .reset : nil
            case .i8042:
                let command = UInt64(PowerControl.i8042CommandPort - PowerControl.i8042DataPort)
                return offset == command && value == 0xFE ? .reset : nil
            }
        }
    }
}
