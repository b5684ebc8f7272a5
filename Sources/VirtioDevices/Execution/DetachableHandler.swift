import Hypervisor
import Synchronization

/// A handler as a side core holds it. Every call the core makes goes through `gate`, so
/// `detach` waits at most for the one bounded call in progress, never for the core's whole
/// round (which other VMs' queues share), and no call reaches the handler after it returns.
final class DetachableHandler: QueueHandler, Sendable {
    // @unchecked: `handler` is only called with `gate` held, by one thread at a time.
    let handler: QueueHandler
    /// True once detached: every call becomes a no-op.
    private let gate = Lock(false)

    init(_ handler: QueueHandler) { self.handler = handler }

    var name: String { handler.name }
    var requestsHandled: UInt64 { handler.requestsHandled }

    func poll(budget: Int) -> Int { gate.withLock { $0 ? 0 : handler.poll(budget: budget) } }

    func setGuestNotifications(enabled: Bool) {
        gate.withLock { if !$0 { handler.setGuestNotifications(enabled: enabled) } }
    }

    func prepareToSleep() -> Bool { gate.withLock { $0 ? false : handler.prepareToSleep() } }

    var wakeDescriptors: [Int32] { gate.withLock { $0 ? [] : handler.wakeDescriptors } }

    var kickDescriptors: [Int32] { gate.withLock { $0 ? [] : handler.kickDescriptors } }

    /// Lets go of the handler on the caller's thread: its kicks come back and held interrupts
    /// are signalled, as when a core removes it, then the core can no longer reach it.
    func detach() {
        gate.withLock { detached in
            guard !detached else { return }
            handler.setGuestNotifications(enabled: true)
            _ = handler.prepareToSleep()
            detached = true
        }
    }
}
