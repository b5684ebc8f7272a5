import Hypervisor
import Synchronization
@testable import VirtioDevices

/// A queue interrupt that counts how often it was raised.
final class CountingInterrupt: QueueInterrupt, Sendable {
    let raised = Atomic<Int>(0)
    func raise() -> InterruptDelivery {
        raised.add(1, ordering: .relaxed)
        return .programmedDestination
    }
}

extension FakeDriver {
    /// A device-side context for this driver's queue, as the transport hands it at DRIVER_OK.
    func context(index: Int = 0, eventIndex: Bool = false) throws -> QueueContext {
        QueueContext(index: index, queue: try queue(eventIndex: eventIndex), kick: try EventFD(nonBlocking: true),
                     interrupt: CountingInterrupt(), coalescing: nil)
    }
}
