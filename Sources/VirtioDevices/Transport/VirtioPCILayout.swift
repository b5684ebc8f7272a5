import Hypervisor

/// Where a modern virtio-pci function keeps its structures in its one 64-bit memory BAR, the
/// PCI capabilities that tell the driver so (virtio 1.2, 4.1.4), and which structure a BAR
/// offset falls in.
enum VirtioPCILayout {
    // Fixed-size structures as ranges of BAR offsets; the doorbells and the MSI-X table grow
    // with the queue count, so only their start is fixed.
    static let common: Range<UInt64> = 0x0000..<0x0040
    static let isrOffset: UInt64 = 0x1000
    static let deviceConfiguration: Range<UInt64> = 0x2000..<0x2100
    static let notifyOffset: UInt64 = 0x3000
    static let notifyMultiplier: UInt32 = 4
    static let msixTableOffset: UInt64 = 0x8000
    static let msixPending: Range<UInt64> = 0xC000..<0xC100
    static let barSize: UInt64 = 0x10000

    /// A structure in BAR 0, with the offset inside it.
    enum Region: Equatable {
        case common(UInt64)
        case isr
        case deviceConfiguration(Int)
        /// A queue's doorbell.
        case notify(queue: Int)
        case msixTable(UInt64)
        case msixPending(UInt64)
        /// Nothing there: reads give 0, writes are dropped.
        case unused
    }

    /// The structure at `offset` for a function with `queueCount` queues and `vectorCount` MSI-X vectors.
    static func region(at offset: UInt64, queueCount: Int, vectorCount: Int) -> Region {
        let notifyEnd = notifyOffset + UInt64(queueCount) * UInt64(notifyMultiplier)
        let tableEnd = msixTableOffset + UInt64(vectorCount * MSIXTable.entrySize)
        switch offset {
        case common: return .common(offset - common.lowerBound)
        case isrOffset: return .isr
        case deviceConfiguration: return .deviceConfiguration(Int(offset - deviceConfiguration.lowerBound))
        case notifyOffset..<notifyEnd: return .notify(queue: Int((offset - notifyOffset) / UInt64(notifyMultiplier)))
        case msixTableOffset..<tableEnd: return .msixTable(offset - msixTableOffset)
        case msixPending: return .msixPending(offset - msixPending.lowerBound)
        default: return .unused
        }
    }

    /// The guest-physical address of queue `queue`'s doorbell in a BAR at `barAddress`.
    static func doorbellAddress(barAddress: UInt64, queue: Int) -> UInt64 {
        barAddress + notifyOffset + UInt64(queue) * UInt64(notifyMultiplier)
    }

    /// Adds BAR 0 and the capabilities (common, notify, ISR, device config, MSI-X) to `space`;
    /// returns the MSI-X capability's offset, whose control word the transport follows.
    static func describe(in space: inout PCIConfigurationSpace, barAddress: UInt64, queueCount: Int) -> Int {
        space.addMemoryBAR64(index: 0, address: barAddress, sizeInBytes: barSize)
        func virtioCapability(type: UInt8, offset: UInt64, length: UInt32, extra: [UInt8] = []) -> [UInt8] {
            // cap_len, cfg_type, bar, id, padding[2], offset, length (+ notify multiplier)
            [UInt8(16 + extra.count), type, 0, 0, 0, 0] + LittleEndian.bytes(UInt32(offset))
                + LittleEndian.bytes(length) + extra
        }
        let notifyLength = UInt32(queueCount) * notifyMultiplier
        space.addCapability(
            id: 0x09, body: virtioCapability(type: 1, offset: common.lowerBound, length: UInt32(common.count)))
        space.addCapability(
            id: 0x09,
            body: virtioCapability(
                type: 2, offset: notifyOffset, length: notifyLength,
                extra: LittleEndian.bytes(notifyMultiplier)))
        space.addCapability(id: 0x09, body: virtioCapability(type: 3, offset: isrOffset, length: 1))
        space.addCapability(
            id: 0x09,
            body: virtioCapability(
                type: 4, offset: deviceConfiguration.lowerBound, length: UInt32(deviceConfiguration.count)))
        // MSI-X: table size - 1 (one vector per queue plus the config vector), then table and PBA
        // offsets in BAR 0; enable and function mask are writable.
        let msix =
            LittleEndian.bytes(UInt16(queueCount)) + LittleEndian.bytes(UInt32(msixTableOffset))
            + LittleEndian.bytes(UInt32(msixPending.lowerBound))
        return space.addCapability(id: 0x11, body: msix, writableMask: [0x00, 0xC0])
    }
}
