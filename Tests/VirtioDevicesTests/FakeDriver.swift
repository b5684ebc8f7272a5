import CKVM
import Hypervisor
@testable import VirtioDevices

/// The driver side of a split virtqueue over real host memory, for device tests.
final class FakeDriver: @unchecked Sendable {
    // @unchecked: each test drives the rings from one thread (the stress test from one vCPU thread).
    let memory: GuestMemory
    let size: UInt16
    let descriptorTable: UInt64
    let availableRing: UInt64
    let usedRing: UInt64
    var availableIndex: UInt16 = 0

    /// Rings at `base` (descriptors), +0x3000 (available) and +0x4000 (used), room for 256 entries.
    convenience init(size: UInt16 = 8, memoryInBytes: UInt64 = 1 << 20) throws {
        try self.init(size: size, memory: GuestMemory(ranges: [(0, memoryInBytes)]), base: 0x1000)
    }

    /// A second queue's driver in the same guest memory, with its rings at `base`.
    init(size: UInt16, memory: GuestMemory, base: UInt64) throws {
        self.memory = memory
        self.size = size
        descriptorTable = base
        availableRing = base + 0x3000
        usedRing = base + 0x4000
    }

    func queue(eventIndex: Bool = false) throws -> Virtqueue {
        try Virtqueue(
            memory: memory, size: size, descriptorTable: descriptorTable, availableRing: availableRing,
            usedRing: usedRing, eventIndex: eventIndex)
    }

    func setDescriptor(
        _ index: UInt16, address: UInt64, length: UInt32, flags: UInt16, next: UInt16 = 0, table: UInt64? = nil
    ) throws {
        let entry = (table ?? descriptorTable) + 16 * UInt64(index)
        try memory.store(address, at: entry)
        try memory.store(length, at: entry + 8)
        try memory.store(flags, at: entry + 12)
        try memory.store(next, at: entry + 14)
    }

    /// Publishes `head` in the available ring and bumps the index.
    func makeAvailable(_ head: UInt16) throws {
        try memory.store(head, at: availableRing + 4 + 2 * UInt64(availableIndex % size))
        availableIndex &+= 1
        publishAvailableIndex()
    }

    /// Stores the available index with release, as a driver's barrier before it does: the ring
    /// entries and descriptors written before are visible to a device thread that sees it.
    func publishAvailableIndex() {
        guard let index = try? memory.slice(at: availableRing + 2, length: 2).baseAddress else { return }
        ckvm_store_release_u16(index, availableIndex.littleEndian)
    }

    func setAvailableIndex(_ index: UInt16) throws {
        availableIndex = index
        try memory.store(index, at: availableRing + 2)
    }

    /// The device's used index, loaded with acquire: the entries it covers are visible.
    var usedIndex: UInt16 {
        guard let index = try? memory.slice(at: usedRing + 2, length: 2).baseAddress else { return 0 }
        return UInt16(littleEndian: ckvm_load_acquire_u16(index))
    }

    func usedElement(_ slot: UInt16) throws -> (id: UInt32, length: UInt32) {
        let base = usedRing + 4 + 8 * UInt64(slot % size)
        return (try memory.load(UInt32.self, at: base), try memory.load(UInt32.self, at: base + 4))
    }

    func setUsedEvent(_ value: UInt16) throws { try memory.store(value, at: availableRing + 4 + 2 * UInt64(size)) }
    func setAvailableFlags(_ value: UInt16) throws { try memory.store(value, at: availableRing) }
    var availableEvent: UInt16 { (try? memory.load(UInt16.self, at: usedRing + 4 + 8 * UInt64(size))) ?? 0 }
    var usedFlags: UInt16 { (try? memory.load(UInt16.self, at: usedRing)) ?? 0 }
}
