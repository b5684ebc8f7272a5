/// Where doorbells become ioeventfds: the VM (`KVM_IOEVENTFD`), or a stand-in where devices run
/// without KVM (fuzzing).
public protocol IOEventFDRegistry: AnyObject, Sendable {
    /// Makes guest writes to `address` signal `eventfd` in the kernel (or stops it, `remove`).
    func setIOEventFD(_ eventfd: EventFD, mmioAddress address: UInt64, length: UInt32, remove: Bool) throws
}
