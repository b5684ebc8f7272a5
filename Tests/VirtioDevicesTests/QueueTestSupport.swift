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

/// MSI routes bound to nothing: unlike KVM's irqfds, nobody consumes the vectors' eventfds, so a
/// test can count what the transport signalled.
final class UnboundMSIRouter: MSIRouting, Sendable {
    private let next = Atomic<UInt32>(24)
    func allocateMSI(eventfd: EventFD) throws -> MSIRoute { MSIRoute(gsi: next.add(1, ordering: .relaxed).oldValue) }
    func setMSI(gsi: UInt32, address: UInt64, data: UInt32) throws {}
}

extension FakeDriver {
    /// A device-side context for this driver's queue, as the transport hands it at DRIVER_OK.
    func context(index: Int = 0, eventIndex: Bool = false) throws -> QueueContext {
        QueueContext(
            index: index, queue: try queue(eventIndex: eventIndex), kick: try EventFD(nonBlocking: true),
            interrupt: CountingInterrupt(), coalescing: nil)
    }
}
