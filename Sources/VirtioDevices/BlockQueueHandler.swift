import CKVM
import Glibc
import Hypervisor

/// Serves one virtio-blk queue: takes available chains, issues each request asynchronously on
/// this queue's own io_uring, and returns chains as their operations complete. Whichever executor
/// drives it polls it; completions also signal an eventfd so a sleeping executor wakes for them.
final class BlockQueueHandler: QueueHandler, @unchecked Sendable {
    // @unchecked: one worker at a time calls a handler (QueueHandler's contract; engines hand a
    // handler over under a lock and detach it before another may take it), so its state needs none.

    private static let firstSlotTag: UInt64 = 0

    /// One request in flight: enough to finish it when its last operation completes.
    private struct InFlight {
        var head: UInt16 = 0
        var statusAddress: UInt64 = 0
        var usedLength: UInt32 = 0
        var expectedResult: Int64 = 0
        var pendingOperations = 0
        var failed = false
    }

    let name: String
    private let device: BlockDevice
    private let context: QueueContext
    private let memory: GuestMemory
    private let features: UInt64
    private let statistics: QueueStatistics
    private let ring: OpaquePointer
    /// Signalled by the kernel for every completion posted to `ring`.
    private let completionSignal: EventFD
    private var slots: [InFlight]
    /// Each slot's iovec array, preallocated (seg_max entries) so the hot path does not allocate.
    private let iovecs: UnsafeMutablePointer<iovec>
    private static let iovecsPerSlot = Int(BlockDevice.segMax)
    private var freeSlots: [Int]
    /// io_uring operations prepared and not yet reaped (submitted or still queued): at most
    /// `operationCapacity`, so the submission queue never fills and the completion queue (twice
    /// its size) never overflows, whatever mix of requests the guest sends.
    private var operationsInFlight = 0
    private let operationCapacity: Int
    /// The most operations one request needs (a DISCARD or WRITE_ZEROES of as many ranges as allowed).
    private static let maxOperationsPerRequest = Int(BlockRequest.maxDiscardSegments)
    /// Set by `quiesce`: the device was reset, so completions no longer touch the rings.
    private var quiesced = false
    /// Chains returned to the used ring since the interrupt logic last looked.
    private var completedSinceInterrupt = 0
    private var interrupts: CompletionInterrupts
    /// Where chains come from; once the driver broke the ring, nothing more is taken until reset.
    private var intake: QueueIntake
    /// io_uring refused a submission: the queue stops as for a broken ring.
    private var submissionFailed = false
    private var broken: Bool { intake.isBroken || submissionFailed }

    init(device: BlockDevice, context: QueueContext, memory: GuestMemory, features: UInt64, statistics: QueueStatistics) throws {
        name = "\(device.name)-q\(context.index)"
        self.device = device
        self.context = context
        self.memory = memory
        self.features = features
        self.statistics = statistics
        interrupts = CompletionInterrupts(context: context, statistics: statistics)
        intake = QueueIntake(context: context, statistics: statistics, label: "\(device.name) queue \(context.index)") {
            [unowned device] reason in device.transportNeedsReset?(reason)
        }
        completionSignal = try EventFD(nonBlocking: true)
        let size = Int(context.queue.size)
        slots = Array(repeating: InFlight(), count: size)
        freeSlots = Array((0..<size).reversed())
        // Room for a queue's worth of single-operation requests, or fewer multi-range ones.
        operationCapacity = max(2 * size, Self.maxOperationsPerRequest)
        var error: Int32 = 0
        guard let ring = ckvm_uring_create(UInt32(operationCapacity), &error) else {
            throw KVMError(.ioUringSetup(queue: name), errno: error)
        }
        let registered = ckvm_uring_register_eventfd(ring, completionSignal.fd)
        guard registered == 0 else {
            ckvm_uring_destroy(ring)
            throw KVMError(.ioUringSetup(queue: name), errno: -registered)
        }
        self.ring = ring
        iovecs = .allocate(capacity: size * Self.iovecsPerSlot)
    }

    deinit {
        ckvm_uring_destroy(ring)
        iovecs.deallocate()
    }

    // MARK: QueueHandler

    func poll(budget: Int) -> Int {
        var done = reapCompletions()
        done += takeAvailable(budget: budget)
        submit()
        signalIfNeeded()
        return done
    }

    func setGuestNotifications(enabled: Bool) {
        context.queue.setNotifications(enabled: enabled)
    }

    func prepareToSleep() -> Bool {
        interrupts.flush()
        statistics.notifications.add(context.kick.drain())
        _ = completionSignal.drain()
        // Checked after draining: a completion or chain that raced the drain is seen here.
        return ckvm_uring_completions_ready(ring) > 0 || ckvm_uring_unsubmitted(ring) > 0 || (canTakeRequest && context.queue.hasAvailable)
    }

    var wakeDescriptors: [Int32] { [context.kick.fd, completionSignal.fd] }

    var requestsHandled: UInt64 { statistics.requests.count }

    /// Waits for every operation the kernel took, so the ring can go and nothing lands in guest
    /// RAM later (device reset, VMM shutdown). The rings belong to the reset device now: requests
    /// still in flight are reaped without completing them to the guest.
    func quiesce() {
        quiesced = true
        submit()
        var tag: UInt64 = 0
        var result: Int32 = 0
        // Queued operations the kernel never took are not in flight; they go with the ring.
        while operationsInFlight > Int(ckvm_uring_unsubmitted(ring)) {
            let status = ckvm_uring_next_completion(ring, 1, &tag, &result)
            guard status == 1 else { break }  // only a broken ring fails a wait (EINTR is retried)
            finishOperation(tag: tag, result: result)
        }
    }

    // MARK: Requests

    /// Hands queued operations to the kernel. One it cannot take now (EAGAIN, EBUSY) stays queued
    /// for the next poll; any other failure means the ring is unusable: the device needs a reset.
    private func submit() {
        guard ckvm_uring_unsubmitted(ring) > 0 else { return }
        let result = ckvm_uring_submit(ring)
        guard result < 0, result != -EAGAIN, result != -EBUSY, !broken else { return }
        submissionFailed = true
        statistics.errors.add()
        device.transportNeedsReset?("\(device.name) queue \(context.index): io_uring submit failed: \(String(cString: strerror(-result)))")
    }

    private func reapCompletions() -> Int {
        var tag: UInt64 = 0
        var result: Int32 = 0
        var count = 0
        while ckvm_uring_next_completion(ring, 0, &tag, &result) == 1 {
            finishOperation(tag: tag, result: result)
            count += 1
        }
        return count
    }

    /// Whether a new request can start: a free slot, room for its operations, a working ring.
    private var canTakeRequest: Bool {
        !broken && !freeSlots.isEmpty && operationsInFlight + Self.maxOperationsPerRequest <= operationCapacity
    }

    private func signalIfNeeded() {
        let inFlight = freeSlots.count < slots.count
        interrupts.published(completedSinceInterrupt, moreExpected: inFlight || (!broken && context.queue.hasAvailable))
        completedSinceInterrupt = 0
    }

    /// Pops up to `budget` available chains while a slot is free; a full queue resumes once a
    /// completion frees a slot. Returns how many it took.
    private func takeAvailable(budget: Int) -> Int {
        var taken = 0
        while taken < budget && canTakeRequest {
            switch intake.next() {
            case .none:
                return taken
            case .rejected:
                taken += 1
                completedSinceInterrupt += 1
            case .chain(let chain):
                taken += 1
                start(chain)
            }
        }
        return taken
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
            completedSinceInterrupt += 1
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
        // `canTakeRequest` left room for this request's operations, so a prep call cannot fail
        // for lack of entries; if it does anyway the request fails, nothing waits for it.
        func submit(expecting result: Int64, _ prepare: () -> Int32) {
            if prepare() == 0 {
                operationsInFlight += 1
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

    /// One io_uring operation finished with `result` (bytes, 0, or -errno); `tag` names its slot.
    private func finishOperation(tag: UInt64, result: Int32) {
        operationsInFlight -= 1
        guard tag >= Self.firstSlotTag, tag - Self.firstSlotTag < UInt64(slots.count) else { return }
        let slot = Int(tag - Self.firstSlotTag)
        guard slots[slot].pendingOperations > 0 else { return }
        slots[slot].pendingOperations -= 1
        // A short transfer or any error (EIO, ENOSPC, ...) fails the request; the device goes on.
        if result < 0 || Int64(result) != slots[slot].expectedResult { slots[slot].failed = true }
        if slots[slot].pendingOperations == 0 { complete(slot: slot) }
    }

    private func complete(slot: Int) {
        let request = slots[slot]
        slots[slot] = InFlight()
        freeSlots.append(slot)
        guard !quiesced else { return }
        if request.failed { statistics.errors.add() }
        try? memory.store(request.failed ? BlockRequest.statusIOError : BlockRequest.statusOK, at: request.statusAddress)
        context.queue.addUsed(head: request.head, length: request.failed ? 1 : request.usedLength)
        completedSinceInterrupt += 1
    }
}
