/// A function on PCI bus 0. Configuration accesses come from `PCIRoot`; accesses to the
/// device's memory BARs arrive through the root's MMIO window with the BAR and offset resolved.
/// Called from vCPU threads.
public protocol PCIDevice: AnyObject, Sendable {
    func configurationRead(offset: Int, width: Int) -> UInt32
    func configurationWrite(offset: Int, width: Int, value: UInt32)
    /// Current (guest-programmed) address and size of each implemented memory BAR.
    func memoryBARs() -> [(index: Int, address: UInt64, sizeInBytes: UInt64)]
    func barRead(index: Int, offset: UInt64, into data: UnsafeMutableRawBufferPointer)
    func barWrite(index: Int, offset: UInt64, data: UnsafeRawBufferPointer)
}

/// The host bridge at 00:00.0: just enough identity for Linux's PCI sanity check.
public final class PCIHostBridge: PCIDevice, Sendable {
    private let space = PCIConfigurationSpace(vendorID: 0x8086, deviceID: 0x0D57, classCode: 0x06_00_00)

    public init() {}
    public func configurationRead(offset: Int, width: Int) -> UInt32 { space.read(offset: offset, width: width) }
    public func configurationWrite(offset: Int, width: Int, value: UInt32) {}
    public func memoryBARs() -> [(index: Int, address: UInt64, sizeInBytes: UInt64)] { [] }
    public func barRead(index: Int, offset: UInt64, into data: UnsafeMutableRawBufferPointer) {}
    public func barWrite(index: Int, offset: UInt64, data: UnsafeRawBufferPointer) {}
}
