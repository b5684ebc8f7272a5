/// What one driver write of `device_status` does (virtio 1.2, 2.1 and 3.1.1), decided from the
/// status as it stands: a pure value, so every sequence a guest can write is checked in one place.
///
/// The lifecycle is reset → acknowledged (ACKNOWLEDGE, DRIVER) → features OK → active (DRIVER_OK)
/// and back to reset only through a write of 0. A write may only add bits, in order; DRIVER_OK
/// activates only from "features OK", never while the device needs a reset or the driver has
/// given up (FAILED); anything else is ignored, so a device is activated at most once per reset.
enum DeviceStatusTransition: Equatable {
    /// Status 0: detach everything, then forget the negotiation.
    case reset
    /// The write breaks the lifecycle (clears a bit, skips a step): nothing changes.
    case ignore
    /// The new status, and whether the device is to be activated now.
    case set(UInt8, activate: Bool)

    static let acknowledge: UInt8 = 1
    static let driver: UInt8 = 2
    static let driverOK: UInt8 = 4
    static let featuresOK: UInt8 = 8
    static let needsReset: UInt8 = 64
    static let failed: UInt8 = 128
    /// Bits a driver may set; NEEDS_RESET is the device's own (drivers write back what they read).
    static let driverBits: UInt8 = acknowledge | driver | driverOK | featuresOK | failed

    /// - Parameters:
    ///   - current: the status now, device bits included.
    ///   - written: what the driver wrote.
    ///   - featuresAcceptable: whether the driver's feature selection may be accepted (a subset
    ///     of the offer, with VERSION_1): decides a new FEATURES_OK.
    init(current: UInt8, written: UInt8, featuresAcceptable: Bool) {
        if written == 0 {
            self = .reset
            return
        }
        let old = current & Self.driverBits
        var new = written & Self.driverBits
        let added = new & ~old
        // A driver never clears a bit short of a reset (2.1.2).
        guard new & old == old, added != 0 else {
            self = .ignore
            return
        }
        // Each step needs the one before it: ACKNOWLEDGE → DRIVER → FEATURES_OK → DRIVER_OK.
        func has(_ bit: UInt8) -> Bool { new & bit != 0 }
        if added & Self.driver != 0 && !has(Self.acknowledge)
            || added & Self.featuresOK != 0 && !has(Self.driver)
            || added & Self.driverOK != 0 && old & Self.featuresOK == 0
        {
            self = .ignore
            return
        }
        if added & Self.featuresOK != 0 && !featuresAcceptable { new &= ~Self.featuresOK }
        let blocked = current & (Self.needsReset | Self.failed) != 0 || added & Self.failed != 0
        if added & Self.driverOK != 0 && blocked {
            // A device that needs a reset, or a driver that gave up, does not go live.
            new &= ~Self.driverOK
        }
        guard new != old else {
            self = .ignore
            return
        }
        self = .set(new | (current & Self.needsReset), activate: new & Self.driverOK != 0 && old & Self.driverOK == 0)
    }
}
