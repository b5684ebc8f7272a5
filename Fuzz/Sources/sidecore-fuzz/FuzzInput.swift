/// Reads a fuzz input front to back as the values a target needs; past the end every read is 0,
/// so any input, however short, is a complete run.
struct FuzzInput {
    private let bytes: UnsafeRawBufferPointer
    private(set) var position = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var isExhausted: Bool { position >= bytes.count }

    mutating func u8() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func u16() -> UInt16 { UInt16(u8()) | UInt16(u8()) << 8 }
    mutating func u32() -> UInt32 { UInt32(u16()) | UInt32(u16()) << 16 }
    mutating func u64() -> UInt64 { UInt64(u32()) | UInt64(u32()) << 32 }

    /// What every ring target reads first: a queue size (a power of two, 1 to 256), flag bits,
    /// and up to `maxOperations` operation bytes.
    mutating func ringHeader(maxOperations: UInt8 = 32) -> (size: UInt16, flags: UInt8, operations: [UInt8]) {
        let size = FuzzRAM.queueSize(u8())
        let flags = u8()
        let operations = Array(take(Int(u8() % maxOperations)))
        return (size, flags, operations)
    }

    /// Up to `count` bytes (fewer at the end of the input).
    mutating func take(_ count: Int) -> UnsafeRawBufferPointer {
        let available = max(0, min(count, bytes.count - position))
        defer { position += available }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + available)])
    }
}

/// Fails the run with a message libFuzzer records with the input that caused it.
func invariant(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError("invariant broken: \(message())") }
}
