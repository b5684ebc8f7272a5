import Dispatch
import Synchronization

/// Tells the interrupt redirector that the guest reprogrammed an MSI message: the router
/// records each change, the redirector waits for one. Created before both, so neither is wired
/// to the other after construction.
public final class GuestMessageChanges: Sendable {
    private let signal = DispatchSemaphore(value: 0)
    private let count = Atomic<UInt64>(0)

    public init() {}

    /// Changes recorded so far.
    public var generation: UInt64 { count.load(ordering: .relaxed) }

    /// Called by the router after the guest reprogrammed a message.
    public func record() {
        count.add(1, ordering: .relaxed)
        signal.signal()
    }

    /// Waits up to `milliseconds` for a change (or a `wake`), then drops the signals a busy
    /// guest piled up meanwhile: one pass of the caller sees every change.
    public func wait(milliseconds: Int) {
        _ = signal.wait(timeout: .now() + .milliseconds(milliseconds))
        while signal.wait(timeout: .now()) == .success {}
    }

    /// Ends a `wait` early without counting a change (the redirector is stopping).
    public func wake() { signal.signal() }
}
