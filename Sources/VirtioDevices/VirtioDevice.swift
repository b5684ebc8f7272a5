import Hypervisor

/// Feature bits every Sidecore virtio device offers (virtio 1.2, section 6).
public enum VirtioFeature {
    public static let indirectDescriptors: UInt64 = 1 << 28
    public static let eventIndex: UInt64 = 1 << 29
    public static let version1: UInt64 = 1 << 32
    /// What the transport adds to each device's own features.
    public static let transport: UInt64 = indirectDescriptors | eventIndex | version1
}

/// One queue handed to a device at activation: the ring, the doorbell the guest rings (an
/// ioeventfd), and the interrupt to raise when the driver wants one.
public struct QueueContext: Sendable {
    public let index: Int
    public let queue: Virtqueue
    public let kick: EventFD
    public let interrupt: QueueInterrupt
    /// Interrupt coalescing the engine asks for, or nil for an interrupt per completion batch.
    public let coalescing: InterruptCoalescingPolicy?
}

/// Raises a queue's interrupt (its MSI-X vector, through an irqfd), honouring masks.
public protocol QueueInterrupt: AnyObject, Sendable {
    @discardableResult
    func raise() -> InterruptDelivery
}

/// A virtio device behind a transport: type, features, queues, config space, lifecycle.
/// The transport owns status and feature negotiation; the device sees only the result.
public protocol VirtioDevice: AnyObject, Sendable {
    /// Virtio device ID (1 network, 2 block).
    var deviceType: UInt16 { get }
    /// PCI class code for the function (e.g. 0x018000 for a block device).
    var pciClassCode: UInt32 { get }
    /// Device-specific feature bits (the transport adds `VirtioFeature.transport`).
    var deviceFeatures: UInt64 { get }
    /// Maximum size of each queue.
    var queueMaxSizes: [UInt16] { get }
    func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer)
    func writeConfiguration(offset: Int, data: UnsafeRawBufferPointer)
    /// Prepares processing with the negotiated features, once per DRIVER_OK: returns the handlers
    /// the transport hands to its `QueueEngine`.
    func activate(memory: GuestMemory, features: UInt64, queues: [QueueContext]) throws -> [QueueHandler]
    /// Called after the engine let go of the handlers (device reset): finishes what is in flight
    /// and forgets the queues.
    func reset()
    /// Set by the transport: a device calls it when the driver broke a ring, to enter DEVICE_NEEDS_RESET.
    var transportNeedsReset: ((String) -> Void)? { get set }
}
