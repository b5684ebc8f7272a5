import Hypervisor

/// The largest ring a device offers per queue (the driver may choose a smaller one). A power of
/// two (virtio 1.2, 2.7) up to 1024, QEMU's limit too: per-queue state grows with it (a block
/// queue keeps an in-flight slot and 126 iovecs per entry, 2 MiB at 1024).
public enum QueueSizeLimit {
    public static let range: ClosedRange<UInt16> = 2...1024
    public static let defaultSize: UInt16 = 256

    /// Refuses a size that is not a power of two in `range`, naming `field`.
    static func check(_ size: UInt16, field: ConfigurationError.Field) throws {
        guard range.contains(size), size & (size - 1) == 0 else {
            throw ConfigurationError(
                field, value: "\(size)", "must be a power of two from \(range.lowerBound) to \(range.upperBound)")
        }
    }
}
