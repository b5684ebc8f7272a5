import CKVM
import Glibc
import Hypervisor

/// Serves one virtio-blk queue: drains the available ring when the guest kicks, issues each
/// request asynchronously on this queue's io_uring, and returns chains as completions arrive.
/// The kick and stop eventfds are read through the same ring, so the thread blocks in one place.
final class BlockQueueWorker: @unchecked Sendable {
    private static let kickTag: UInt64 = 0
    private static let stopTag: UInt64 = 1
    private static let firstSlotTag: UInt64 = 2

    /// One request in flight: enough to finish it when its last operation completes.
    private struct InFlight {
        var head: UInt16 = 0
        var statusAddress: UInt64 = 0
        var usedLength: UInt32 = 0
        var expectedResult: Int64 = 0
        var pendingOperations = 0
        var failed = false
    }

    private let device: BlockDevice
    private let context: QueueContext
    private let memory: GuestMemory
    private let features: UInt64
    private let statistics: QueueStatistics
    private let ring: OpaquePointer
    private let stopSignal: EventFD
    private var slots: [InFlight]
    /// Each slot's iovec array, preallocated (seg_max entries) so the hot path does not allocate.
    private let iovecs: UnsafeMutablePointer<iovec>
    private static let iovecsPerSlot = Int(BlockDevice.segMax)
    private var freeSlots: [Int]
    /// Where io_uring stores the kick and stop eventfd counters: stable memory, not a Swift property.
    private let eventFDCounters = UnsafeMutablePointer<UInt64>.allocate(capacity: 2)
    private var thread: HostThread?
    private var completedSinceInterrupt = false

    init(device: BlockDevice, context: QueueContext, memory: GuestMemory, features: UInt64, statistics: QueueStatistics) throws {
        self.device = device
        self.context = context
        self.memory = memory
        self.features = features
        self.statistics = statistics
        stopSignal = try EventFD()
        let size = Int(context.queue.size)
        slots = Array(repeating: InFlight(), count: size)
        iovecs = .allocate(capacity: size * Self.iovecsPerSlot)
        freeSlots = Array((0..<size).reversed())
        // Room for every slot's operations plus the two eventfd reads.
        var error: Int32 = 0
        guard let ring = ckvm_uring_create(UInt32(size * 2 + 2), &error) else {
            throw KVMError(.ioUringSetup(queue: "\(device.name) queue \(context.index)"), errno: error)
        }
        self.ring = ring
        thread = try HostThread(name: "\(device.name)-q\(context.index)") { [self] in run() }
    }

    deinit {
        ckvm_uring_destroy(ring)
        iovecs.deallocate()
        eventFDCounters.deallocate()
    }

    func stop() {
        stopSignal.signal()
        thread?.join()
        thread = nil
    }

    private func armEventFDReads(kick: Bool, stop: Bool) {
        if kick { _ = ckvm_uring_prep_read(ring, context.kick.fd, eventFDCounters, 8, Self.kickTag) }
        if stop { _ = ckvm_uring_prep_read(ring, stopSignal.fd, eventFDCounters + 1, 8, Self.stopTag) }
    }

    private func run() {
        armEventFDReads(kick: true, stop: true)
        drainQueue()
        var running = true
        var tag: UInt64 = 0
        var result: Int32 = 0
        while running {
            ckvm_uring_submit_and_wait(ring, 1)
            while ckvm_uring_next_completion(ring, 0, &tag, &result) == 1 {
                switch tag {
                case Self.stopTag:
                    running = false
                case Self.kickTag:
                    statistics.notifications.add(max(1, eventFDCounters[0]))
                    armEventFDReads(kick: true, stop: false)
                    drainQueue()
                default:
                    finishOperation(slot: Int(tag - Self.firstSlotTag), result: result)
                }
            }
            signalIfNeeded()
        }
        // Requests still in flight complete before the ring goes away (the driver reset the device).
        ckvm_uring_submit_and_wait(ring, 0)
        while freeSlots.count < slots.count, ckvm_uring_next_completion(ring, 1, &tag, &result) == 1 {
            if tag >= Self.firstSlotTag { finishOperation(slot: Int(tag - Self.firstSlotTag), result: result) }
        }
    }

    private func signalIfNeeded() {
        guard completedSinceInterrupt else { return }
        completedSinceInterrupt = false
        if context.queue.needsInterrupt() {
            statistics.interrupts.add()
            context.interrupt.raise()
        }
    }

    /// Pops every available chain while a slot is free; a full queue resumes on the next completion.
    private func drainQueue() {
        while !freeSlots.isEmpty {
            let popped: DescriptorChainResult?
            do {
                popped = try context.queue.popAvailable()
            } catch {
                statistics.errors.add()
                device.transportNeedsReset?("\(device.name) queue \(context.index): \(error)")
                return
            }
            guard let popped else { return }
            switch popped {
            case .failure(let head, _):
                statistics.errors.add()
                context.queue.addUsed(head: head, length: 0)
                completedSinceInterrupt = true
            case .chain(let chain):
                start(chain)
            }
        }
    }

    private func start(_ chain: DescriptorChain) {
        statistics.requests.add()
        let parsed = BlockRequest.parse(chain, memory: memory, capacityInSectors: device.capacityInSectors,
                                        readOnly: device.configuration.readOnly, features: features)
        let request: BlockRequest
        switch parsed {
        case .failure(let refusal):
            statistics.errors.add()
            let statusAddress = refusal.statusAddress
            if let statusAddress {
                try? memory.store(refusal.rejection == .unsupported ? BlockRequest.statusUnsupported : BlockRequest.statusIOError, at: statusAddress)
            }
            context.queue.addUsed(head: chain.head, length: statusAddress == nil ? 0 : 1)
            completedSinceInterrupt = true
            return
        case .success(let value):
            request = value
        }
        let slot = freeSlots.removeLast()
        slots[slot] = InFlight(head: chain.head, statusAddress: request.statusAddress, usedLength: 1)
        if device.configuration.backend == .null {
            if case .read(_, _) = request.kind { slots[slot].usedLength += UInt32(request.dataLength) }
            statistics.bytes.add(request.dataLength)
            complete(slot: slot)
            return
        }
        let fd = device.fd
        let tag = Self.firstSlotTag + UInt64(slot)
        // The ring holds two entries per slot, so a prep call only fails for a broken ring.
        func submit(expecting result: Int64, _ prepare: () -> Int32) {
            if prepare() == 0 {
                slots[slot].pendingOperations += 1
                slots[slot].expectedResult = result
            } else {
                slots[slot].failed = true
            }
        }
        switch request.kind {
        case .read(let sector, let buffers), .write(let sector, let buffers):
            let isRead = { if case .read = request.kind { return true } else { return false } }()
            // A driver that ignores seg_max gets an error rather than an unbounded iovec array.
            guard buffers.count <= Self.iovecsPerSlot else {
                slots[slot].failed = true
                complete(slot: slot)
                return
            }
            let vectors = iovecs + slot * Self.iovecsPerSlot
            for (index, buffer) in buffers.enumerated() {
                // Checked by the chain walk already; a failure here leaves a zero-length entry.
                let slice = try? memory.slice(at: buffer.address, length: UInt64(buffer.length))
                vectors[index] = iovec(iov_base: slice?.baseAddress, iov_len: slice?.count ?? 0)
            }
            if isRead { slots[slot].usedLength += UInt32(request.dataLength) }
            statistics.bytes.add(request.dataLength)
            let offset = sector * BlockRequest.sectorSize
            let count = UInt32(buffers.count)
            submit(expecting: Int64(request.dataLength)) {
                ckvm_uring_prep_rw(ring, isRead ? 0 : 1, fd, vectors, count, offset, tag)
            }
            if slots[slot].pendingOperations == 0 { complete(slot: slot) }
        case .flush:
            statistics.flushes.add()
            submit(expecting: 0) { ckvm_uring_prep_fdatasync(ring, fd, tag) }
            if slots[slot].pendingOperations == 0 { complete(slot: slot) }
        case .getID(let buffer):
            let id = Array(device.configuration.id.utf8.prefix(BlockRequest.idLength))
            let padded = id + [UInt8](repeating: 0, count: max(0, min(Int(buffer.length), BlockRequest.idLength) - id.count))
            try? memory.write(Array(padded.prefix(Int(buffer.length))), at: buffer.address)
            slots[slot].usedLength += UInt32(min(Int(buffer.length), BlockRequest.idLength))
            complete(slot: slot)
        case .discard(let ranges), .writeZeroes(let ranges, _):
            var mode = ckvm_falloc_punch_hole()
            if case .writeZeroes(_, let unmap) = request.kind, !unmap { mode = ckvm_falloc_zero_range() }
            for range in ranges where range.count > 0 {
                submit(expecting: 0) {
                    ckvm_uring_prep_fallocate(ring, fd, mode, range.sector * BlockRequest.sectorSize, UInt64(range.count) * BlockRequest.sectorSize, tag)
                }
            }
            if slots[slot].pendingOperations == 0 { complete(slot: slot) }
        }
    }

    /// One io_uring operation of `slot` finished with `result` (bytes, 0, or -errno).
    private func finishOperation(slot: Int, result: Int32) {
        guard slot < slots.count, slots[slot].pendingOperations > 0 else { return }
        slots[slot].pendingOperations -= 1
        // A short transfer or any error (EIO, ENOSPC, ...) fails the request; the device goes on.
        if result < 0 || Int64(result) != slots[slot].expectedResult { slots[slot].failed = true }
        if slots[slot].pendingOperations == 0 { complete(slot: slot) }
    }

    private func complete(slot: Int) {
        let request = slots[slot]
        if request.failed { statistics.errors.add() }
        try? memory.store(request.failed ? BlockRequest.statusIOError : BlockRequest.statusOK, at: request.statusAddress)
        context.queue.addUsed(head: request.head, length: request.failed ? 1 : request.usedLength)
        slots[slot] = InFlight()
        freeSlots.append(slot)
        completedSinceInterrupt = true
        // A slot is free again: chains that waited for one can start.
        drainQueue()
    }
}
