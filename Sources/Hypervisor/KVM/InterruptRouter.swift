import CKVM
import Glibc
import Synchronization

/// The VM's GSI routing table (`KVM_SET_GSI_ROUTING`): the in-kernel PIC/IOAPIC pins KVM sets up
/// by default, plus one MSI route per allocated GSI, each fed by an irqfd.
///
/// KVM replaces the whole table on every update, so the router keeps the full table and
/// re-issues it; updates happen when the guest programs or masks an MSI-X vector, not per interrupt.
public final class InterruptRouter: @unchecked Sendable {
    public static let firstMSIGSI: UInt32 = 24

    private struct MSIRoute {
        var addressLow: UInt32 = 0
        var addressHigh: UInt32 = 0
        var data: UInt32 = 0
    }

    private let vm: VirtualMachine
    private let routes = Mutex<[UInt32: MSIRoute]>([:])
    private let nextGSI = Atomic<UInt32>(InterruptRouter.firstMSIGSI)

    public init(vm: VirtualMachine) {
        self.vm = vm
    }

    /// A new GSI for an MSI source, with `eventfd` bound to it through `KVM_IRQFD`.
    public func allocateMSI(eventfd: EventFD) throws -> UInt32 {
        let gsi = nextGSI.wrappingAdd(1, ordering: .relaxed).oldValue
        try routes.withLock { table in
            table[gsi] = MSIRoute()
            try apply(table)
        }
        var irqfd = kvm_irqfd()
        irqfd.fd = UInt32(eventfd.fd)
        irqfd.gsi = gsi
        try check(.irqfd(gsi: gsi)) { ckvm_irqfd(vm.fd, &irqfd) }
        return gsi
    }

    /// Points `gsi` at an MSI message (the guest's MSI-X table entry).
    public func setMSI(gsi: UInt32, address: UInt64, data: UInt32) throws {
        try routes.withLock { table in
            table[gsi] = MSIRoute(addressLow: UInt32(truncatingIfNeeded: address), addressHigh: UInt32(address >> 32), data: data)
            try apply(table)
        }
    }

    private func apply(_ table: [UInt32: MSIRoute]) throws {
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
        for (gsi, route) in table.sorted(by: { $0.key < $1.key }) {
            var msi = kvm_irq_routing_entry()
            msi.gsi = gsi
            msi.type = UInt32(KVM_IRQ_ROUTING_MSI)
            msi.u.msi.address_lo = route.addressLow
            msi.u.msi.address_hi = route.addressHigh
            msi.u.msi.data = route.data
            entries.append(msi)
        }
        let header = MemoryLayout<kvm_irq_routing>.size
        let bytes = header + entries.count * MemoryLayout<kvm_irq_routing_entry>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 8)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        let routing = raw.bindMemory(to: kvm_irq_routing.self, capacity: 1)
        routing.pointee.nr = UInt32(entries.count)
        let list = (raw + header).bindMemory(to: kvm_irq_routing_entry.self, capacity: entries.count)
        for (index, entry) in entries.enumerated() { list[index] = entry }
        try check(.setGSIRouting) { ckvm_set_gsi_routing(vm.fd, routing) }
    }
}
