import CKVM
import Glibc

/// A KVM VM file descriptor: memory slots, in-kernel interrupt controllers and vCPU creation.
public final class VirtualMachine: IOEventFDRegistry, Sendable {
    public let fd: Int32
    public let kvm: KVM

    init(fd: Int32, kvm: KVM) {
        self.fd = fd
        self.kvm = kvm
    }

    deinit { close(fd) }

    /// Corresponds to `KVM_SET_USER_MEMORY_REGION`.
    public func setUserMemoryRegion(slot: UInt32, guestAddress: UInt64, sizeInBytes: UInt64, hostAddress: UInt64) throws
    {
        var region = kvm_userspace_memory_region(
            slot: slot, flags: 0, guest_phys_addr: guestAddress, memory_size: sizeInBytes, userspace_addr: hostAddress)
        try check(.setUserMemoryRegion(slot: slot)) { ckvm_set_user_memory_region(fd, &region) }
    }

    /// Registers every region of `memory` as a memory slot, slot number = region index.
    public func map(_ memory: GuestMemory) throws {
        for (index, region) in memory.regions.enumerated() {
            try setUserMemoryRegion(
                slot: UInt32(index), guestAddress: region.guestAddress, sizeInBytes: region.sizeInBytes,
                hostAddress: memory.hostAddress(ofRegion: index))
        }
    }

    /// Corresponds to `KVM_CREATE_IRQCHIP`: in-kernel PIC, IOAPIC and per-vCPU LAPICs.
    public func createIRQChip() throws {
        try check(.createIRQChip) { ckvm_create_irqchip(fd) }
    }

    /// Corresponds to `KVM_CREATE_PIT2`: the in-kernel i8254 PIT (ports 0x40-0x43, speaker port 0x61 left to us).
    public func createPIT() throws {
        var config = kvm_pit_config()
        config.flags = UInt32(KVM_PIT_SPEAKER_DUMMY)
        try check(.createPIT2) { ckvm_create_pit2(fd, &config) }
    }

    /// Corresponds to `KVM_SET_TSS_ADDR` (three pages the VMX real-mode emulation needs; unused elsewhere).
    public func setTSSAddress(_ address: UInt64) throws {
        try check(.setTSSAddress) { ckvm_set_tss_addr(fd, UInt(address)) }
    }

    /// Corresponds to `KVM_SET_IDENTITY_MAP_ADDR` (one page for VMX's real-mode identity map).
    public func setIdentityMapAddress(_ address: UInt64) throws {
        try check(.setIdentityMapAddress) { ckvm_set_identity_map_addr(fd, address) }
    }

    /// Corresponds to `KVM_IRQ_LINE`: sets the level of a GSI on the in-kernel PIC/IOAPIC.
    public func setIRQLine(_ irq: UInt32, level: Bool) throws {
        try check(.irqLine(irq: irq)) { ckvm_irq_line(fd, irq, level ? 1 : 0) }
    }

    /// Corresponds to `KVM_IOEVENTFD`: a guest write of `length` bytes to MMIO `address` signals
    /// `eventfd` inside KVM, without an exit to userspace. `remove` unregisters it.
    public func setIOEventFD(_ eventfd: EventFD, mmioAddress address: UInt64, length: UInt32, remove: Bool = false)
        throws
    {
        var request = kvm_ioeventfd()
        request.addr = address
        request.len = length
        request.fd = eventfd.fd
        request.flags = remove ? UInt32(1 << kvm_ioeventfd_flag_nr_deassign) : 0
        try check(.ioeventfd(address: address)) { ckvm_ioeventfd(fd, &request) }
    }

    /// Corresponds to `KVM_CREATE_VCPU`.
    public func createVCPU(id: Int) throws -> VCPU {
        let vcpufd = ckvm_create_vcpu(fd, UInt(id))
        if vcpufd < 0 { throw KVMError(.createVCPU(id: id)) }
        do {
            return try VCPU(fd: vcpufd, id: id, mmapSize: try kvm.vcpuMmapSize())
        } catch {
            close(vcpufd)
            throw error
        }
    }
}
