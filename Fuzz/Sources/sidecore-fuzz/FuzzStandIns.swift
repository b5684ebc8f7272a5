import Hypervisor
import Synchronization
@testable import VirtioDevices

/// Counts raises; never redirected.
final class CountingInterrupt: QueueInterrupt, @unchecked Sendable {
    // @unchecked: a fuzz target runs on one thread.
    var raised = 0
    func raise() -> InterruptDelivery {
        raised += 1
        return .programmedDestination
    }
}

/// GSIs without KVM: hands out numbers and records the message of each.
final class FakeMSIRouter: MSIRouting, @unchecked Sendable {
    // @unchecked: a fuzz target runs on one thread.
    private var next: UInt32 = 24
    private(set) var messages: [UInt32: (UInt64, UInt32)] = [:]
    func allocateMSI(eventfd: EventFD) throws -> MSIRoute {
        defer { next += 1 }
        return MSIRoute(gsi: next)
    }
    func setMSI(gsi: UInt32, address: UInt64, data: UInt32) throws { messages[gsi] = (address, data) }
}

/// ioeventfds as KVM keeps them: registering the same address twice fails (EEXIST), removing
/// one that is not there fails (ENOENT).
final class FakeIOEventFDs: IOEventFDRegistry, @unchecked Sendable {
    // @unchecked: a fuzz target runs on one thread.
    struct Duplicate: Error {}
    private(set) var registered: Set<UInt64> = []
    func setIOEventFD(_ eventfd: EventFD, mmioAddress address: UInt64, length: UInt32, remove: Bool) throws {
        if remove {
            invariant(
                registered.remove(address) != nil,
                "removed a doorbell at 0x\(String(address, radix: 16)) that was never registered")
        } else {
            guard registered.insert(address).inserted else { throw Duplicate() }
        }
    }
}

/// An engine that runs nothing by itself: the target polls what is attached, inline.
final class InlineEngine: QueueEngine, @unchecked Sendable {
    // @unchecked: a fuzz target runs on one thread.
    let interruptCoalescing: InterruptCoalescingPolicy?
    private(set) var handlers: [QueueHandler] = []
    init(coalescing: Bool) { interruptCoalescing = coalescing ? InterruptCoalescingPolicy() : nil }
    func attach(_ handlers: [QueueHandler]) throws {
        for handler in handlers {
            invariant(!self.handlers.contains { $0 === handler }, "handler \(handler.name) attached twice")
        }
        self.handlers += handlers
    }
    func detach(_ handlers: [QueueHandler]) {
        for handler in handlers {
            guard let index = self.handlers.firstIndex(where: { $0 === handler }) else {
                invariant(false, "detached \(handler.name), which was not attached")
                return
            }
            self.handlers.remove(at: index)
        }
    }
}

extension FuzzRAM {
    /// A queue context as the transport builds one at DRIVER_OK.
    func context(index: Int, size: UInt16, base: UInt64 = 0, eventIndex: Bool) -> (QueueContext, CountingInterrupt) {
        let interrupt = CountingInterrupt()
        let context = QueueContext(
            index: index, queue: queue(size: size, base: base, eventIndex: eventIndex),
            kick: try! EventFD(nonBlocking: true), interrupt: interrupt, coalescing: nil)
        return (context, interrupt)
    }
}
