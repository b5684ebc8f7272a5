import Synchronization

/// A statistics counter shared between threads (relaxed: only totals matter).
public final class Counter: Sendable {
    @usableFromInline let value = Atomic<UInt64>(0)

    public init() {}
    /// Inlinable: called across modules on side cores' hot paths, an opaque call made the caller
    /// retain and release the counter around it (two locked instructions for one relaxed add).
    @inlinable public func add(_ amount: UInt64 = 1) { value.wrappingAdd(amount, ordering: .relaxed) }
    public var count: UInt64 { value.load(ordering: .relaxed) }
}
