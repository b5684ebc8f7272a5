/// A type-0 PCI configuration space (256 bytes) with per-byte write masks, BAR sizing and a
/// capability list. Devices fill it at creation; the guest then reads and writes it through
/// `PCIRoot`'s 0xCF8/0xCFC mechanism.
public struct PCIConfigurationSpace: Sendable {
    public static let size = 256
    public private(set) var bytes = [UInt8](repeating: 0, count: size)
    private var writable = [UInt8](repeating: 0, count: size)
    private var nextCapability = 0x40

    public init(
        vendorID: UInt16, deviceID: UInt16, classCode: UInt32, revision: UInt8 = 1,
        subsystemVendorID: UInt16 = 0, subsystemID: UInt16 = 0
    ) {
        set16(0x00, vendorID)
        set16(0x02, deviceID)
        bytes[0x08] = revision
        bytes[0x09] = UInt8(classCode & 0xFF)
        bytes[0x0A] = UInt8((classCode >> 8) & 0xFF)
        bytes[0x0B] = UInt8((classCode >> 16) & 0xFF)
        set16(0x2C, subsystemVendorID)
        set16(0x2E, subsystemID)
        // Command: I/O space, memory space, bus master, INTx disable are the guest's to set.
        writable[0x04] = 0x07
        writable[0x05] = 0x04
        writable[0x3C] = 0xFF  // interrupt line
    }

    func get16(_ offset: Int) -> UInt16 { LittleEndian.load(UInt16.self, from: bytes, at: offset) }
    func get32(_ offset: Int) -> UInt32 { LittleEndian.load(UInt32.self, from: bytes, at: offset) }
    mutating func set16(_ offset: Int, _ value: UInt16) {
        bytes[offset] = UInt8(value & 0xFF)
        bytes[offset + 1] = UInt8(value >> 8)
    }
    mutating func set32(_ offset: Int, _ value: UInt32) {
        set16(offset, UInt16(value & 0xFFFF))
        set16(offset + 2, UInt16(value >> 16))
    }

    /// Declares a 64-bit prefetchable memory BAR (uses slots `index` and `index + 1`) at `address`.
    public mutating func addMemoryBAR64(index: Int, address: UInt64, sizeInBytes: UInt64) {
        precondition(index % 2 == 0 && index < 5 && sizeInBytes.nonzeroBitCount == 1 && sizeInBytes >= 16)
        set32(0x10 + 4 * index, UInt32(address & 0xFFFF_FFF0) | 0x0C)  // 64-bit, prefetchable
        set32(0x14 + 4 * index, UInt32(address >> 32))
        let mask = ~(sizeInBytes - 1)
        writable.replaceSubrange((0x10 + 4 * index)..<(0x18 + 4 * index), with: LittleEndian.bytes(mask))
        writable[0x10 + 4 * index] &= 0xF0  // type bits are read-only
    }

    /// The current address of a 64-bit memory BAR.
    public func barAddress(index: Int) -> UInt64 {
        UInt64(get32(0x10 + 4 * index) & 0xFFFF_FFF0) | UInt64(get32(0x14 + 4 * index)) << 32
    }

    public var memoryDecodingEnabled: Bool { bytes[0x04] & 0x02 != 0 }

    /// Appends a capability with `body` (the bytes after ID and next pointer) and returns its offset.
    /// `writableMask` marks which body bytes the guest may change.
    @discardableResult
    public mutating func addCapability(id: UInt8, body: [UInt8], writableMask: [UInt8] = []) -> Int {
        let offset = nextCapability
        precondition(offset + 2 + body.count <= Self.size, "PCI capabilities overflow configuration space")
        bytes[offset] = id
        bytes[offset + 1] = 0
        bytes.replaceSubrange((offset + 2)..<(offset + 2 + body.count), with: body)
        for (index, mask) in writableMask.enumerated() { writable[offset + 2 + index] = mask }
        if bytes[0x34] == 0 {
            bytes[0x34] = UInt8(offset)
            bytes[0x06] |= 0x10  // status: capability list
        } else {
            var link = Int(bytes[0x34])
            while bytes[link + 1] != 0 { link = Int(bytes[link + 1]) }
            bytes[link + 1] = UInt8(offset)
        }
        nextCapability = (offset + 2 + body.count + 3) & ~3
        return offset
    }

    /// Reads a 1, 2 or 4-byte register (offset aligned to its width, checked by the caller).
    public func read(offset: Int, width: Int) -> UInt32 {
        let start = min(max(offset, 0), Self.size)
        return UInt32(
            truncatingIfNeeded: LittleEndian.value(of: bytes[start..<min(max(offset + width, start), Self.size)]))
    }

    /// Writes through the write masks: read-only bits keep their value whatever the guest writes.
    public mutating func write(offset: Int, width: Int, value: UInt32) {
        let bytesWritten = LittleEndian.bytes(value)
        for index in 0..<width where offset + index < Self.size {
            let byte = index < 4 ? bytesWritten[index] : 0
            let mask = writable[offset + index]
            bytes[offset + index] = (bytes[offset + index] & ~mask) | (byte & mask)
        }
    }
}
