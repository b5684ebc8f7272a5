/// The bytes of `value` in little-endian order, for building guest-visible tables and registers.
public func littleEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian) { Array($0) }
}
