/// An MSI message as a guest programs it into an MSI-X table entry (Intel SDM vol. 3, "Message
/// Signalled Interrupts"): the address names the destination, the data the vector and how it
/// is delivered.
public struct MSIMessage: Equatable, Sendable {
    public var address: UInt64
    public var data: UInt32

    public init(address: UInt64, data: UInt32) {
        self.address = address
        self.data = data
    }

    public var vector: UInt8 { UInt8(truncatingIfNeeded: data) }
    /// Data bits 10:8: 0 fixed, 1 lowest priority, 2 SMI, 4 NMI, 5 INIT, 7 ExtINT.
    public var deliveryMode: UInt32 { (data >> 8) & 7 }
    /// Address bits 19:12.
    public var destinationID: UInt8 { UInt8(truncatingIfNeeded: address >> 12) }
    /// Address bit 2 (destination mode): the destination is a logical APIC ID mask.
    public var isLogical: Bool { address & (1 << 2) != 0 }
    /// Address bit 3 (redirection hint).
    public var redirectionHint: Bool { address & (1 << 3) != 0 }
    /// Address bits 11:5: KVM's extended destination ID (x2APIC IDs above 255) when the guest
    /// uses it; reserved (zero) otherwise.
    public var extendedDestinationID: UInt32 { UInt32((address >> 5) & 0x7F) }

    /// The message is an interrupt that lets the platform pick any one CPU of its destination,
    /// the way KVM reads it: lowest-priority delivery, or fixed delivery with the redirection
    /// hint. (NMI, SMI, INIT and ExtINT messages are never moved, whatever the hint says.)
    public var allowsAnyDestinationCPU: Bool {
        isInterruptMessage && (deliveryMode == 1 || (deliveryMode == 0 && redirectionHint))
    }

    /// Addressed to the local APICs' window (0xFEExxxxx), as every interrupt message is.
    public var isInterruptMessage: Bool { address >> 20 == 0xFEE }

    /// The same vector and trigger, delivered fixed to the one CPU with physical APIC ID `apicID`.
    public func delivered(toPhysicalAPIC apicID: UInt8) -> MSIMessage {
        MSIMessage(address: 0xFEE0_0000 | UInt64(apicID) << 12, data: data & ~0x700)
    }
}
