import Hypervisor
import Synchronization

/// The MSI-X table and pending-bit array of one PCI function. Each vector owns an irqfd and a
/// GSI route; the route follows the table entry, and a masked vector records a pending bit
/// instead of interrupting, delivered when it is unmasked.
public final class MSIXTable: Sendable {
    public static let entrySize = 16

    private struct Entry {
        var addressLow: UInt32 = 0
        var addressHigh: UInt32 = 0
        var data: UInt32 = 0
        var control: UInt32 = 1  // masked at reset
        var pending = false
    }

    private let router: MSIRouting
    /// One irqfd per vector: signalling it is what delivers the vector's message.
    let eventfds: [EventFD]
    private let routes: [MSIRoute]
    private let state: Lock<(entries: [Entry], enabled: Bool, functionMasked: Bool)>
    public var vectorCount: Int { eventfds.count }

    public init(vectorCount: Int, router: MSIRouting) throws {
        var eventfds: [EventFD] = []
        var routes: [MSIRoute] = []
        for _ in 0..<vectorCount {
            let eventfd = try EventFD()
            routes.append(try router.allocateMSI(eventfd: eventfd))
            eventfds.append(eventfd)
        }
        self.router = router
        self.eventfds = eventfds
        self.routes = routes
        self.state = Lock((Array(repeating: Entry(), count: vectorCount), false, false))
    }

    /// MSI-X message control bits 15 (enable) and 14 (function mask), from configuration space.
    public func setControl(enabled: Bool, functionMasked: Bool) {
        let deliver = state.withLock { state -> [Int] in
            state.enabled = enabled
            state.functionMasked = functionMasked
            return Self.collectDeliverable(&state)
        }
        for vector in deliver { fire(vector) }
    }

    /// Raises `vector` (a masked one is recorded in the pending bits and sent on unmask).
    @discardableResult
    public func raise(vector: Int) -> InterruptDelivery {
        let fireNow = state.withLock { state -> Bool in
            guard vector < state.entries.count else { return false }
            if !state.enabled || state.functionMasked || state.entries[vector].control & 1 != 0 {
                state.entries[vector].pending = true
                return false
            }
            return true
        }
        return fireNow ? fire(vector) : .held
    }

    /// Signals `vector` through its route.
    @discardableResult
    private func fire(_ vector: Int) -> InterruptDelivery {
        let redirected = routes[vector].isRedirected
        eventfds[vector].signal()
        return redirected ? .redirected : .programmedDestination
    }

    /// Pending vectors that may now be delivered; clears their pending bits.
    private static func collectDeliverable(_ state: inout (entries: [Entry], enabled: Bool, functionMasked: Bool))
        -> [Int]
    {
        guard state.enabled, !state.functionMasked else { return [] }
        var ready: [Int] = []
        for index in state.entries.indices where state.entries[index].pending && state.entries[index].control & 1 == 0 {
            state.entries[index].pending = false
            ready.append(index)
        }
        return ready
    }

    public func readTable(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        let value: UInt32 = state.withLock { state in
            let vector = Int(offset) / Self.entrySize
            guard vector < state.entries.count else { return 0 }
            let entry = state.entries[vector]
            switch (Int(offset) % Self.entrySize) & ~3 {
            case 0: return entry.addressLow
            case 4: return entry.addressHigh
            case 8: return entry.data
            default: return entry.control
            }
        }
        store(value, offset: offset, into: data)
    }

    /// A table write; the vector's route is updated and a pending interrupt fires on unmask.
    public func writeTable(offset: UInt64, data: UnsafeRawBufferPointer) throws {
        guard data.count == 4 || data.count == 8 else { return }  // the spec allows only dword and qword
        let value = LittleEndian.value(of: data)
        let vector = Int(offset) / Self.entrySize
        let field = Int(offset) % Self.entrySize
        let update = state.withLock { state -> (route: (UInt64, UInt32)?, deliver: [Int]) in
            guard vector < state.entries.count else { return (nil, []) }
            var entry = state.entries[vector]
            var words = [entry.addressLow, entry.addressHigh, entry.data, entry.control]
            words[field / 4] = UInt32(truncatingIfNeeded: value)
            if data.count == 8 && field / 4 < 3 { words[field / 4 + 1] = UInt32(truncatingIfNeeded: value >> 32) }
            entry.addressLow = words[0]
            entry.addressHigh = words[1]
            entry.data = words[2]
            entry.control = words[3] & 1
            let messageChanged =
                entry.addressLow != state.entries[vector].addressLow
                || entry.addressHigh != state.entries[vector].addressHigh || entry.data != state.entries[vector].data
            state.entries[vector] = entry
            let route = messageChanged ? (UInt64(entry.addressHigh) << 32 | UInt64(entry.addressLow), entry.data) : nil
            return (route, Self.collectDeliverable(&state))
        }
        if let (address, message) = update.route {
            try router.setMSI(gsi: routes[vector].gsi, address: address, data: message)
        }
        for vector in update.deliver { fire(vector) }
    }

    public func readPendingBits(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        let bits: UInt64 = state.withLock { state in
            var bits: UInt64 = 0
            for (index, entry) in state.entries.enumerated() where entry.pending && index / 64 == Int(offset) / 8 {
                bits |= 1 << UInt64(index % 64)
            }
            return bits
        }
        store(bits >> (8 * (offset % 8)), offset: 0, into: data)
    }

    private func store<T: FixedWidthInteger>(_ value: T, offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        let shift = 8 * UInt64(offset % 4)
        LittleEndian.store(UInt64(value) >> shift, into: data)
    }
}
