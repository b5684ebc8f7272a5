import Synchronization

/// PCI bus 0 behind configuration mechanism #1 (ports 0xCF8 address, 0xCFC-0xCFF data), and the
/// MMIO window in which devices' memory BARs live. Slot 0 is the host bridge.
public final class PCIRoot: @unchecked Sendable {
    // @unchecked: `devices` and `nextBARAddress` change only while the machine is built, before
    // any vCPU thread exists; afterwards they are only read.
    public static let configAddressPort: UInt64 = 0xCF8
    /// Where BARs are placed before the guest moves them: the start of the 32-bit MMIO hole.
    public static let mmioWindowStart: UInt64 = 0xC000_0000
    public static let mmioWindowEnd: UInt64 = 0xFEC0_0000

    private var devices: [PCIDevice?] = Array(repeating: nil, count: 32)
    private let address = Atomic<UInt32>(0)
    private var nextBARAddress = PCIRoot.mmioWindowStart

    public init() {
        devices[0] = PCIHostBridge()
    }

    /// Places `device` in the next free slot and returns the slot number.
    public func add(_ device: PCIDevice) -> Int {
        let slot = devices.firstIndex { $0 == nil }!
        devices[slot] = device
        return slot
    }

    /// Hands out naturally aligned addresses for BARs in the MMIO window.
    public func allocateBARAddress(sizeInBytes: UInt64) -> UInt64 {
        let address = (nextBARAddress + sizeInBytes - 1) & ~(sizeInBytes - 1)
        nextBARAddress = address + sizeInBytes
        return address
    }

    /// Registers the configuration ports and the MMIO window on the machine's buses.
    public func attach(portBus: IOBus, mmioBus: IOBus) throws {
        try portBus.register(ConfigurationPorts(root: self), base: Self.configAddressPort, length: 8)
        try mmioBus.register(
            MMIOWindow(root: self), base: Self.mmioWindowStart, length: Self.mmioWindowEnd - Self.mmioWindowStart)
    }

    private final class ConfigurationPorts: BusDevice, Sendable {
        let root: PCIRoot
        init(root: PCIRoot) { self.root = root }

        func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
            let value: UInt32
            if offset == 0 && data.count == 4 {
                value = root.address.load(ordering: .relaxed)
            } else if offset >= 4, let (device, register) = root.selected(offset: offset, width: data.count) {
                value = device.configurationRead(offset: register, width: data.count)
            } else {
                value = 0xFFFF_FFFF  // no device: all ones, as on real hardware
            }
            LittleEndian.store(UInt64(value), into: data)
        }

        func write(offset: UInt64, data: UnsafeRawBufferPointer) {
            let value = UInt32(truncatingIfNeeded: LittleEndian.value(of: data))
            if offset == 0 && data.count == 4 {
                root.address.store(value, ordering: .relaxed)
            } else if offset >= 4, let (device, register) = root.selected(offset: offset, width: data.count) {
                device.configurationWrite(offset: register, width: data.count, value: value)
            }
        }
    }

    /// The device and register selected by 0xCF8 for a data-port access at `offset` (4...7).
    private func selected(offset: UInt64, width: Int) -> (PCIDevice, Int)? {
        let selector = address.load(ordering: .relaxed)
        guard selector & 0x8000_0000 != 0 else { return nil }  // enable bit
        let bus = (selector >> 16) & 0xFF
        let slot = Int((selector >> 11) & 0x1F)
        let function = (selector >> 8) & 0x7
        let register = Int(selector & 0xFC) + Int(offset - 4)
        guard bus == 0, function == 0, register % width == 0, let device = devices[slot] else { return nil }
        return (device, register)
    }

    private final class MMIOWindow: BusDevice, Sendable {
        let root: PCIRoot
        init(root: PCIRoot) { self.root = root }

        func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
            if let (device, bar, barOffset) = root.bar(containing: PCIRoot.mmioWindowStart + offset, width: data.count)
            {
                device.barRead(index: bar, offset: barOffset, into: data)
            } else {
                data.initializeMemory(as: UInt8.self, repeating: 0xFF)
            }
        }

        func write(offset: UInt64, data: UnsafeRawBufferPointer) {
            if let (device, bar, barOffset) = root.bar(containing: PCIRoot.mmioWindowStart + offset, width: data.count)
            {
                device.barWrite(index: bar, offset: barOffset, data: data)
            }
        }
    }

    /// Finds the BAR that currently decodes `address` (the guest may have moved it).
    private func bar(containing address: UInt64, width: Int) -> (PCIDevice, Int, UInt64)? {
        for case let device? in devices {
            // Guest-programmed BARs may sit at the very top of the address space (BAR sizing
            // writes all ones): compare offsets, never sums that could overflow.
            for bar in device.memoryBARs()
            where address >= bar.address && UInt64(width) <= bar.sizeInBytes
                && address - bar.address <= bar.sizeInBytes - UInt64(width)
            {
                return (device, bar.index, address - bar.address)
            }
        }
        return nil
    }
}
