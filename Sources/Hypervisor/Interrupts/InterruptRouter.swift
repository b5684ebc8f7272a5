import CKVM
import Glibc
import Synchronization

/// One MSI source's GSI, and whether its route currently goes where the VMM chose
/// (interrupt redirection) instead of where the guest programmed it.
public final class MSIRoute: Sendable {
    public let gsi: UInt32
    private let redirectedFlag = Atomic<Bool>(false)
    public var isRedirected: Bool { redirectedFlag.load(ordering: .relaxed) }

    public init(gsi: UInt32) { self.gsi = gsi }
    func setRedirected(_ value: Bool) { redirectedFlag.store(value, ordering: .relaxed) }
}

/// The VM's GSI routing table (`KVM_SET_GSI_ROUTING`): the in-kernel PIC/IOAPIC pins KVM sets up
/// by default, plus one MSI route per allocated GSI, each fed by an irqfd.
///
/// KVM replaces the whole table on every update, so the router keeps the full table and
/// re-issues it; updates happen when the guest programs an MSI-X vector or the redirector
/// moves a route, not per interrupt.
public final class InterruptRouter: MSIRouting, Sendable {
    public static let firstMSIGSI: UInt32 = 24

    private struct Entry {
        let route: MSIRoute
        /// As the guest programmed it.
        var guest = MSIMessage(address: 0, data: 0)
        /// What KVM delivers instead, while redirected.
        var redirected: MSIMessage?
    }

    private let vm: VirtualMachine
    private let entries = Lock<[UInt32: Entry]>([:])
    private let nextGSI = Atomic<UInt32>(InterruptRouter.firstMSIGSI)
    /// Told after the guest reprogrammed a message (outside the router's lock), for the redirector.
    private let messageChanges: GuestMessageChanges?

    public init(vm: VirtualMachine, messageChanges: GuestMessageChanges? = nil) {
        self.vm = vm
        self.messageChanges = messageChanges
    }

    /// A new GSI for an MSI source, with `eventfd` bound to it through `KVM_IRQFD`.
    public func allocateMSI(eventfd: EventFD) throws -> MSIRoute {
        let route = MSIRoute(gsi: nextGSI.wrappingAdd(1, ordering: .relaxed).oldValue)
        try entries.withLock { table in
            table[route.gsi] = Entry(route: route)
            try apply(table)
        }
        var irqfd = kvm_irqfd()
        irqfd.fd = UInt32(eventfd.fd)
        irqfd.gsi = route.gsi
        try check(.irqfd(gsi: route.gsi)) { ckvm_irqfd(vm.fd, &irqfd) }
        return route
    }

    /// Points `gsi` at the guest's MSI message (its MSI-X table entry). A redirection of the
    /// GSI ends: it was chosen for the old message.
    public func setMSI(gsi: UInt32, address: UInt64, data: UInt32) throws {
        try entries.withLock { table in
            guard var entry = table[gsi] else { return }
            entry.guest = MSIMessage(address: address, data: data)
            entry.redirected = nil
            var next = table
            next[gsi] = entry
            try apply(next)
            table = next
            entry.route.setRedirected(false)
        }
        messageChanges?.record()
    }

    /// The guest's messages by GSI.
    public func guestMessages() -> [UInt32: MSIMessage] {
        entries.withLock { table in table.mapValues(\.guest) }
    }

    /// A GSI's route while redirected: `delivered` instead of `guest`, the message it was chosen for.
    public struct Redirection: Sendable {
        public let guest: MSIMessage
        public let delivered: MSIMessage
        public init(guest: MSIMessage, delivered: MSIMessage) {
            self.guest = guest
            self.delivered = delivered
        }
    }

    /// What a `setRedirections` call changed.
    public struct RedirectionChanges: Equatable, Sendable {
        /// GSIs now sent to a message the VMM chose (newly, or to another one than before).
        public var retargeted = 0
        /// GSIs sent back to the guest's message.
        public var restored = 0
    }

    /// Redirects each GSI in `redirections` and sends every other GSI back to the guest's
    /// message, in one table update (none when nothing changes); the table changes only once
    /// KVM has accepted it. A redirection chosen for a message the guest has since replaced is
    /// dropped.
    @discardableResult
    public func setRedirections(_ redirections: [UInt32: Redirection]) throws -> RedirectionChanges {
        try entries.withLock { table in
            var next = table
            var changes = RedirectionChanges()
            for (gsi, var entry) in table {
                let wanted = redirections[gsi].flatMap { $0.guest == entry.guest ? $0.delivered : nil }
                guard wanted != entry.redirected else { continue }
                if wanted == nil { changes.restored += 1 } else { changes.retargeted += 1 }
                entry.redirected = wanted
                next[gsi] = entry
            }
            guard changes != RedirectionChanges() else { return changes }
            try apply(next)
            table = next
            for entry in table.values { entry.route.setRedirected(entry.redirected != nil) }
            return changes
        }
    }

    private func apply(_ table: [UInt32: Entry]) throws {
        var entries: [kvm_irq_routing_entry] = []
        // KVM's default wiring: GSI 0-15 on both PICs and the IOAPIC, 16-23 on the IOAPIC only.
        for gsi in UInt32(0)..<24 {
            if gsi < 16 {
                var pic = kvm_irq_routing_entry()
                pic.gsi = gsi
                pic.type = UInt32(KVM_IRQ_ROUTING_IRQCHIP)
                pic.u.irqchip.irqchip = gsi < 8 ? UInt32(KVM_IRQCHIP_PIC_MASTER) : UInt32(KVM_IRQCHIP_PIC_SLAVE)
                pic.u.irqchip.pin = gsi % 8
                entries.append(pic)
            }
            var ioapic = kvm_irq_routing_entry()
            ioapic.gsi = gsi
            ioapic.type = UInt32(KVM_IRQ_ROUTING_IRQCHIP)
            ioapic.u.irqchip.irqchip = UInt32(KVM_IRQCHIP_IOAPIC)
            ioapic.u.irqchip.pin = gsi
            entries.append(ioapic)
        }
        for (gsi, entry) in table.sorted(by: { $0.key < $1.key }) {
            let message = entry.redirected ?? entry.guest
            var msi = kvm_irq_routing_entry()
            msi.gsi = gsi
            msi.type = UInt32(KVM_IRQ_ROUTING_MSI)
            msi.u.msi.address_lo = UInt32(truncatingIfNeeded: message.address)
            msi.u.msi.address_hi = UInt32(truncatingIfNeeded: message.address >> 32)
            msi.u.msi.data = message.data
            entries.append(msi)
        }
        let routing = KVMFlexibleArray<kvm_irq_routing, kvm_irq_routing_entry>(
            capacity: entries.count, count: \.nr, elements: entries)
        try check(.setGSIRouting) { ckvm_set_gsi_routing(vm.fd, routing.header) }
    }
}
