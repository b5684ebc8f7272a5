import CKVM
import Hypervisor

/// Why a virtqueue or one of its chains cannot be used. Each is the driver's fault: the request
/// gets an error status or the device needs a reset, and nothing else is affected.
public enum VirtqueueError: Error, Equatable, CustomStringConvertible {
    case invalidSize(UInt16)
    case misaligned(ring: String, address: UInt64)
    case ringOutsideMemory(ring: String, address: UInt64)
    case availableIndexJump(from: UInt16, to: UInt16)
    case headOutOfRange(UInt16)
    case nextOutOfRange(UInt16)
    case chainTooLong
    case nestedIndirect
    case indirectWithNext
    case invalidIndirectTable(length: UInt32)
    case bufferOutsideMemory(address: UInt64, length: UInt32)
    case totalLengthOverflow
    case readableAfterWritable

    public var description: String {
        switch self {
        case .invalidSize(let size): return "queue size \(size) is not a power of two in 1...32768"
        case .misaligned(let ring, let address): return "\(ring) at 0x\(String(address, radix: 16)) is misaligned"
        case .ringOutsideMemory(let ring, let address):
            return "\(ring) at 0x\(String(address, radix: 16)) is outside guest RAM"
        case .availableIndexJump(let from, let to): return "available index jumped from \(from) to \(to)"
        case .headOutOfRange(let head): return "chain head \(head) is out of range"
        case .nextOutOfRange(let next): return "descriptor next \(next) is out of range"
        case .chainTooLong: return "descriptor chain is longer than the queue (a cycle)"
        case .nestedIndirect: return "indirect descriptor inside an indirect table"
        case .indirectWithNext: return "indirect descriptor with NEXT set"
        case .invalidIndirectTable(let length): return "indirect table of \(length) bytes"
        case .bufferOutsideMemory(let address, let length):
            return "buffer of \(length) bytes at 0x\(String(address, radix: 16)) is outside guest RAM"
        case .totalLengthOverflow: return "chain length exceeds 4 GiB"
        case .readableAfterWritable: return "device-readable descriptor after a device-writable one"
        }
    }
}

/// One guest buffer of a descriptor chain, already checked to lie inside guest RAM.
public struct VirtqueueBuffer: Equatable {
    public let address: UInt64
    public let length: UInt32
    public let isDeviceWritable: Bool
}

/// A descriptor chain popped from the available ring: its head (for the used ring) and buffers
/// in order, device-readable ones first.
public struct DescriptorChain: Equatable {
    public let head: UInt16
    public let buffers: BufferList

    public init(head: UInt16, buffers: BufferList) {
        self.head = head
        self.buffers = buffers
    }

    public var readable: Slice<BufferList> { buffers.prefix { !$0.isDeviceWritable } }
    public var writable: Slice<BufferList> { buffers.drop { !$0.isDeviceWritable } }
    public var writableLength: UInt64 { writable.reduce(0) { $0 + UInt64($1.length) } }
}

/// A virtio 1.2 split virtqueue, device side.
///
/// Ring addresses are validated once at creation (alignment, inside guest RAM); the hot path then
/// reads and writes the rings through `GuestMemoryView`s of them. Descriptor contents come from
/// the guest at any time and are checked on every walk.
public final class Virtqueue: @unchecked Sendable {
    // @unchecked: one thread at a time drives a queue (its handler's worker, QueueHandler says
    // so); the transport builds it at DRIVER_OK and drops it only after the engine detached it.
    // For the same reason the ring indices are @exclusivity(unchecked): the runtime's access
    // checks on them were 3% of a side core at 1.7M IOPS (perf record, hvctl bench --null).
    static let descriptorNext: UInt16 = 1
    static let descriptorWrite: UInt16 = 2
    static let descriptorIndirect: UInt16 = 4
    static let usedNoNotify: UInt16 = 1
    static let availableNoInterrupt: UInt16 = 1

    public let size: UInt16
    public let eventIndex: Bool
    let memory: GuestMemory
    let descriptorTable: UInt64
    private let available: GuestMemoryView  // flags, idx, ring[size], used_event
    private let used: GuestMemoryView  // flags, idx, ring[size] of (id, len), avail_event
    /// The next available-ring slot to read: everything before it has been popped.
    @exclusivity(unchecked) public private(set) var lastAvailableIndex: UInt16 = 0
    /// The used index as last published to the driver.
    @exclusivity(unchecked) public private(set) var usedIndex: UInt16 = 0
    /// usedIndex when the driver was last interrupted, for VIRTIO_RING_F_EVENT_IDX.
    @exclusivity(unchecked) private var lastSignalledUsedIndex: UInt16 = 0

    public init(
        memory: GuestMemory, size: UInt16, descriptorTable: UInt64, availableRing: UInt64, usedRing: UInt64,
        eventIndex: Bool
    ) throws {
        guard size > 0, size <= 32768, size & (size - 1) == 0 else { throw VirtqueueError.invalidSize(size) }
        let count = UInt64(size)
        func ring(_ name: String, _ address: UInt64, alignment: UInt64, length: UInt64) throws -> GuestMemoryView {
            guard address % alignment == 0 else { throw VirtqueueError.misaligned(ring: name, address: address) }
            guard let view = try? memory.view(at: address, length: length) else {
                throw VirtqueueError.ringOutsideMemory(ring: name, address: address)
            }
            return view
        }
        _ = try ring("descriptor table", descriptorTable, alignment: 16, length: 16 * count)
        self.available = try ring("available ring", availableRing, alignment: 2, length: 6 + 2 * count)
        self.used = try ring("used ring", usedRing, alignment: 4, length: 6 + 8 * count)
        self.memory = memory
        self.size = size
        self.descriptorTable = descriptorTable
        self.eventIndex = eventIndex
    }

    /// The driver's available index, loaded with acquire: ring entries it covers are visible.
    private var availableIndex: UInt16 { available.loadAcquire(UInt16.self, at: 2) }

    /// True when the driver has made chains available that have not been popped.
    public var hasAvailable: Bool { availableIndex != lastAvailableIndex }

    /// Pops the next available chain, or nil when the ring is empty. A malformed chain is still
    /// consumed (so the queue moves on) and reported through `DescriptorChainResult.failure` with its head.
    public func popAvailable() throws -> DescriptorChainResult? {
        let index = availableIndex
        let pending = index &- lastAvailableIndex
        if pending == 0 { return nil }
        // More pending entries than the ring holds means the driver's index is garbage.
        guard pending <= size else { throw VirtqueueError.availableIndexJump(from: lastAvailableIndex, to: index) }
        let slot = Int(lastAvailableIndex % size)
        let head = available.load(UInt16.self, at: 4 + 2 * slot)
        lastAvailableIndex &+= 1
        if eventIndex { publishAvailableEvent() }
        do {
            return .chain(try walk(head: head))
        } catch let error as VirtqueueError {
            return .failure(head: head, error: error)
        }
    }

    /// Reads a chain, bounded by the queue size: at most `size` descriptors in the table and an
    /// indirect table of at most `size` entries (virtio 1.2, 2.7.5.3.1: a driver must not create a
    /// chain longer than the queue size, indirect tables included), so one chain costs a poll at
    /// most about 2 × `size` descriptor reads whatever the guest writes.
    func walk(head: UInt16) throws -> DescriptorChain {
        guard head < size else { throw VirtqueueError.headOutOfRange(head) }
        var buffers = BufferList()
        var total: UInt64 = 0
        var table = descriptorTable
        var tableSize = UInt32(size)
        var index = head
        var remaining = UInt32(size)
        var indirect = false
        while true {
            guard remaining > 0 else { throw VirtqueueError.chainTooLong }
            remaining -= 1
            // One bounds check for the whole 16-byte descriptor; an address past 2^64 is outside RAM.
            let (entry, overflow) = table.addingReportingOverflow(16 * UInt64(index))
            guard !overflow else { throw VirtqueueError.bufferOutsideMemory(address: table, length: tableSize * 16) }
            let descriptor = try memory.slice(at: entry, length: 16)
            let address = UInt64(littleEndian: descriptor.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
            let length = UInt32(littleEndian: descriptor.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            let flags = UInt16(littleEndian: descriptor.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
            let next = UInt16(littleEndian: descriptor.loadUnaligned(fromByteOffset: 14, as: UInt16.self))
            if flags & Self.descriptorIndirect != 0 {
                guard !indirect else { throw VirtqueueError.nestedIndirect }
                guard flags & Self.descriptorNext == 0 else { throw VirtqueueError.indirectWithNext }
                guard length >= 16, length % 16 == 0, length / 16 <= UInt32(size) else {
                    throw VirtqueueError.invalidIndirectTable(length: length)
                }
                guard memory.contains(address, length: UInt64(length)) else {
                    throw VirtqueueError.bufferOutsideMemory(address: address, length: length)
                }
                indirect = true
                table = address
                tableSize = length / 16
                remaining = tableSize
                index = 0
                continue
            }
            guard memory.contains(address, length: UInt64(length)) else {
                throw VirtqueueError.bufferOutsideMemory(address: address, length: length)
            }
            let writable = flags & Self.descriptorWrite != 0
            if !writable, buffers.last?.isDeviceWritable == true { throw VirtqueueError.readableAfterWritable }
            total += UInt64(length)
            guard total <= UInt64(UInt32.max) else { throw VirtqueueError.totalLengthOverflow }
            buffers.append(VirtqueueBuffer(address: address, length: length, isDeviceWritable: writable))
            guard flags & Self.descriptorNext != 0 else { break }
            guard UInt32(next) < tableSize else { throw VirtqueueError.nextOutOfRange(next) }
            index = next
        }
        return DescriptorChain(head: head, buffers: buffers)
    }

    /// Returns a chain to the driver with `length` bytes written into its device-writable buffers.
    public func addUsed(head: UInt16, length: UInt32) {
        let slot = Int(usedIndex % size)
        used.store(UInt32(head), at: 4 + 8 * slot)
        used.store(length, at: 8 + 8 * slot)
        usedIndex &+= 1
        // Release: the element above is visible to the driver before the index that covers it.
        used.storeRelease(usedIndex, at: 2)
    }

    /// Whether the driver wants an interrupt for the chains used since the last one
    /// (VIRTIO_RING_F_EVENT_IDX's used_event, or VRING_AVAIL_F_NO_INTERRUPT without it).
    public func needsInterrupt() -> Bool {
        // Full barrier: our used->idx store is ordered before reading the driver's suppression state.
        ckvm_fence_seq_cst()
        defer { lastSignalledUsedIndex = usedIndex }
        if eventIndex {
            let usedEvent = available.load(UInt16.self, at: 4 + 2 * Int(size))
            // vring_need_event: did used_idx move past used_event since the last signal?
            return (usedIndex &- usedEvent &- 1) < (usedIndex &- lastSignalledUsedIndex)
        }
        let flags = available.loadAcquire(UInt16.self, at: 0)
        return flags & Self.availableNoInterrupt == 0
    }

    /// Whether the driver is asked to kick (false while a side core polls this queue).
    @exclusivity(unchecked) public private(set) var notificationsEnabled = true

    /// avail_event (EVENT_IDX). With kicks wanted: kick once the driver publishes past what we have
    /// consumed. Without: half the index space away. The driver kicks only when avail_event lies in
    /// [old, new) of its kick check, where old is its index at the previous check. Linux publishes
    /// each chain as it adds it and checks later, so a side core may already have consumed past
    /// old; but old and new both stay within `size` (at most 32768) of what we consumed, so an
    /// index 32768 ahead is never inside the range.
    private func publishAvailableEvent() {
        let event = notificationsEnabled ? lastAvailableIndex : lastAvailableIndex &+ 0x8000
        used.store(event, at: 4 + 8 * Int(size))
    }

    /// Asks the driver not to kick (polling) or to kick again. When re-enabling, the caller must
    /// check `hasAvailable` afterwards: a chain may have arrived while kicks were off.
    public func setNotifications(enabled: Bool) {
        notificationsEnabled = enabled
        if eventIndex {
            publishAvailableEvent()
        } else {
            used.storeRelease(enabled ? 0 : Self.usedNoNotify, at: 0)
        }
        // Full barrier: the suppression store is visible before the caller re-reads avail->idx.
        ckvm_fence_seq_cst()
    }
}

/// A popped chain, or the error that made it unusable (the head is still returned as used).
public enum DescriptorChainResult: Equatable {
    case chain(DescriptorChain)
    case failure(head: UInt16, error: VirtqueueError)
}
