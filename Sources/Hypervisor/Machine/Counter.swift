import Synchronization

/// A statistics counter shared between threads (relaxed: only totals matter).
public final class Counter: Sendable {
    private let value = Atomic<UInt64>(0)

    public init() {}
    public func add(_ amount: UInt64 = 1) { value.add(amount, ordering: .relaxed) }
    public var count: UInt64 { value.load(ordering: .relaxed) }
}
