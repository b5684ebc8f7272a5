/// The parts of a vCPU's local APIC state that decide which interrupt messages it accepts: its
/// IDs, the logical destination model, and whether it is enabled (read with KVM_GET_LAPIC and
/// the APIC base MSR on the vCPU's own thread).
public struct LocalAPICIdentity: Equatable, Sendable {
    /// The physical APIC ID (the ID register's bits 31:24; KVM reports x2APIC IDs below 256 there too).
    public var apicID: UInt32
    /// The logical destination register: xAPIC uses bits 31:24, x2APIC cluster (31:16) and bit (15:0).
    public var logicalDestination: UInt32
    /// The destination format register's model is flat (bits 31:28 = 1111) rather than cluster.
    public var flatModel: Bool
    public var x2APIC: Bool
    /// Globally enabled (APIC base MSR bit 11) and software-enabled (SVR bit 8).
    public var enabled: Bool

    public init(apicID: UInt32, logicalDestination: UInt32, flatModel: Bool, x2APIC: Bool, enabled: Bool) {
        self.apicID = apicID
        self.logicalDestination = logicalDestination
        self.flatModel = flatModel
        self.x2APIC = x2APIC
        self.enabled = enabled
    }

    /// From `KVM_GET_LAPIC`'s register page and the IA32_APIC_BASE MSR.
    public init(registers: UnsafeRawBufferPointer, apicBase: UInt64) {
        func register(_ offset: Int) -> UInt32 { registers.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
        apicID = register(0x20) >> 24
        logicalDestination = register(0xD0)
        flatModel = register(0xE0) >> 28 == 0xF
        x2APIC = apicBase & (1 << 10) != 0
        enabled = apicBase & (1 << 11) != 0 && register(0xF0) & (1 << 8) != 0
    }

    /// Whether `message`'s destination names this local APIC (delivery mode aside), by the rules
    /// KVM applies to MSIs: 0xFF broadcasts; a logical destination is a mask of flat bits, a
    /// cluster and its bits, or for x2APIC cluster 0's bits 7:0.
    public func isDestination(of message: MSIMessage) -> Bool {
        guard enabled, message.extendedDestinationID == 0 else { return false }
        let destination = UInt32(message.destinationID)
        if destination == 0xFF { return true }
        guard message.isLogical else { return apicID == destination }
        if x2APIC { return logicalDestination >> 16 == 0 && logicalDestination & 0xFFFF & destination != 0 }
        let logical = logicalDestination >> 24
        if flatModel { return logical & destination != 0 }
        return logical >> 4 == destination >> 4 && logical & destination & 0xF != 0
    }
}
