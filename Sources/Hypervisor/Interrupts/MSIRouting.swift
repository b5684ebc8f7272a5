/// Where a PCI function's MSI-X vectors get their GSIs and routes: the VM's `InterruptRouter`,
/// or a stand-in where devices run without KVM (fuzzing).
public protocol MSIRouting: AnyObject, Sendable {
    /// A new GSI for an MSI source, with `eventfd` bound to it.
    func allocateMSI(eventfd: EventFD) throws -> MSIRoute
    /// Points `gsi` at the guest's MSI message.
    func setMSI(gsi: UInt32, address: UInt64, data: UInt32) throws
}
