/// The package's one little-endian codec: everything the guest sees (ACPI and boot tables,
/// register accesses, virtio and PCI structures) and the image headers it reads are little-endian.
/// Guest RAM itself is read and written through `GuestMemory`, which uses the same byte order.
public enum LittleEndian {
    /// `value`'s bytes, least significant first.
    public static func bytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }

    /// The number in `bytes` (least significant first); bytes past the eighth are ignored. For
    /// register accesses of 1 to 8 bytes and header fields.
    public static func value<Bytes: Collection<UInt8>>(of bytes: Bytes) -> UInt64 {
        var value: UInt64 = 0
        for (index, byte) in bytes.prefix(8).enumerated() { value |= UInt64(byte) << (8 * UInt64(index)) }
        return value
    }

    /// The `T` at `offset` in `bytes`; the caller has checked that it lies inside.
    public static func load<T: FixedWidthInteger>(_: T.Type, from bytes: [UInt8], at offset: Int) -> T {
        T(truncatingIfNeeded: value(of: bytes[offset..<(offset + MemoryLayout<T>.size)]))
    }

    /// Fills `buffer` (a register read) with `value`'s bytes, least significant first; bytes past
    /// the eighth are zero.
    public static func store(_ value: UInt64, into buffer: UnsafeMutableRawBufferPointer) {
        for index in 0..<buffer.count {
            buffer[index] = index < 8 ? UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) : 0
        }
    }
}
