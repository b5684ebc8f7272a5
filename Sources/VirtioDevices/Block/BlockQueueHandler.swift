import CKVM
import Glibc
import Hypervisor

/// Serves one virtio-blk queue: takes available chains, starts each request's operations on the
/// queue's own backend (`BlockBackend`: the file's io_uring, or null), and returns chains as
/// their operations complete. Whichever executor drives it polls it; the backend's completions
/// also wake a sleeping executor.
final class BlockQueueHandler: QueueHandler, @unchecked Sendable {
    // @unchecked: one worker at a time calls a handler (QueueHandler's contract; engines hand a
    // handler over under a lock and detach it before another may take it), so its state needs none.
    // For the same reason the per-request state is @exclusivity(unchecked): the runtime's dynamic
    // exclusivity checks on it were 15% of a side core's time on the null backend (perf record,
    // hvctl bench --null --qd 64), and no two accesses to it can overlap on one thread here.

    /// One request in flight: enough to finish it when its last operation completes.
    private struct InFlight {
        var head: UInt16 = 0
        var statusAddress: UInt64 = 0
        var usedLength: UInt32 = 0
        var expectedResult: Int64 = 0
        var pendingOperations = 0
        var failed = false
        /// The poll round's time when the request was taken.
        var started: UInt64 = 0
    }

    let name: String
    private let device: BlockDevice
    private let context: QueueContext
    private let memory: GuestMemory
    private let features: UInt64
    private let statistics: QueueStatistics
    private let backend: BlockBackend
    @exclusivity(unchecked) private var slots: [InFlight]
    @exclusivity(unchecked) private var freeSlots: [Int]
    /// The most operations one request needs (a DISCARD or WRITE_ZEROES of as many ranges as allowed).
    private static let maxOperationsPerRequest = Int(BlockRequest.maxDiscardSegments)
    /// Set by `quiesce`: the device was reset, so completions no longer touch the rings.
    @exclusivity(unchecked) private var quiesced = false
    /// Chains returned to the used ring since the interrupt logic last looked.
    @exclusivity(unchecked) private var completedSinceInterrupt = 0
    private var interrupts: CompletionInterrupts
    /// Where chains come from; once the driver broke the ring, nothing more is taken until reset.
    private var intake: QueueIntake
    /// The backend refused a submission: the queue stops as for a broken ring.
    private var submissionFailed = false
    private var broken: Bool { intake.isBroken || submissionFailed }
    /// Requests and bytes taken this poll round, added to `statistics` once at its end: two atomic
    /// additions per request were 3% of a side core at 1.3M IOPS.
    @exclusivity(unchecked) private var roundRequests: UInt64 = 0
    @exclusivity(unchecked) private var roundBytes: UInt64 = 0
    /// The current poll round's time, for request latencies.
    @exclusivity(unchecked) private var clock = RoundClock()

    init(device: BlockDevice, context: QueueContext, memory: GuestMemory, features: UInt64, statistics: QueueStatistics)
        throws
    {
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
        let size = Int(context.queue.size)
        slots = Array(repeating: InFlight(), count: size)
        freeSlots = Array((0..<size).reversed())
        switch device.configuration.backend {
        case .null:
            backend = NullBlockBackend()
        case .file:
            // Room for a queue's worth of single-operation requests, or fewer multi-range ones.
            backend = try IOUringBlockBackend(
                fd: device.fd, memory: memory, slots: size, segmentsPerSlot: Int(BlockDevice.segMax),
                capacity: max(2 * size, Self.maxOperationsPerRequest), name: name)
        }
    }

    // MARK: QueueHandler

    func poll(budget: Int) -> Int {
        clock.nextRound()
        var done = reapCompletions()
        done += takeAvailable(budget: budget)
        if roundRequests > 0 {
            statistics.add(.requests, roundRequests)
            statistics.add(.bytes, roundBytes)
            roundRequests = 0
            roundBytes = 0
        }
        submit()
        signalIfNeeded()
        return done
    }

    func setGuestNotifications(enabled: Bool) {
        context.queue.setNotifications(enabled: enabled)
    }

    func prepareToSleep() -> Bool {
        interrupts.flush()
        statistics.add(.notifications, context.kick.drain())
        // Checked after draining: a chain that raced the drain is seen here (the backend's
        // descriptor stays readable while completions wait, so it needs no draining).
        return backend.hasPendingWork || (canTakeRequest && context.queue.hasAvailable)
    }

    var wakeDescriptors: [Int32] { [context.kick.fd] + (backend.completionDescriptor.map { [$0] } ?? []) }

    var kickDescriptors: [Int32] { [context.kick.fd] }

    var requestsHandled: UInt64 { statistics.requests.count }

    // A backend with a completion descriptor completes operations asynchronously: what the kernel
    // cannot do inline at submission (buffered writes on ext4, reads that miss the page cache) goes
    // to io-wq worker threads, which inherit the side core's CPU.
    var awaitsKernelThreads: Bool { backend.completionDescriptor != nil && freeSlots.count < slots.count }

    /// Waits for every operation the kernel took, so the backend can go and nothing lands in guest
    /// RAM later (device reset, VMM shutdown). The rings belong to the reset device now: requests
    /// still in flight are reaped without completing them to the guest.
    func quiesce() {
        quiesced = true
        submit()
        backend.reap(everything: true, finishOperation)
    }

    // MARK: Requests

    /// Hands started operations to the backend's kernel side; a backend that can no longer work
    /// means the device needs a reset.
    private func submit() {
        guard let failure = backend.submit(), !broken else { return }
        submissionFailed = true
        statistics.add(.errors)
        device.transportNeedsReset?("\(device.name) queue \(context.index): \(failure)")
    }

    private func reapCompletions() -> Int {
        backend.reap(everything: false, finishOperation)
    }

    /// Whether a new request can start: a free slot, room for its operations, a working backend.
    private var canTakeRequest: Bool {
        !broken && !freeSlots.isEmpty && backend.hasRoom(for: Self.maxOperationsPerRequest)
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
        roundRequests += 1
        let parsed = BlockRequest.parse(
            chain, memory: memory, capacityInSectors: device.capacityInSectors,
            readOnly: device.configuration.readOnly, features: features)
        let request: BlockRequest
        switch parsed {
        case .failure(let refusal):
            statistics.add(.errors)
            let statusAddress = refusal.statusAddress
            if let statusAddress {
                try? memory.store(
                    refusal.rejection == .unsupported ? BlockRequest.statusUnsupported : BlockRequest.statusIOError,
                    at: statusAddress)
            }
            context.queue.addUsed(head: chain.head, length: statusAddress == nil ? 0 : 1)
            completedSinceInterrupt += 1
            return
        case .success(let value):
            request = value
        }
        let slot = freeSlots.removeLast()
        slots[slot] = InFlight(
            head: chain.head, statusAddress: request.statusAddress, usedLength: 1, started: clock.now())
        // Each operation of the request, with the result that means it did all it was asked.
        func begin(_ operation: BlockOperation, expecting expected: Int64) {
            switch backend.start(operation, slot: slot) {
            case .started:
                slots[slot].pendingOperations += 1
                slots[slot].expectedResult = expected
            case .completed(let result):
                if Int64(result) != expected { slots[slot].failed = true }
            case .refused:
                slots[slot].failed = true
            }
        }
        switch request.kind {
        case .read(let sector, let buffers):
            slots[slot].usedLength += UInt32(request.dataLength)
            roundBytes &+= request.dataLength
            begin(
                .read(offset: sector * BlockRequest.sectorSize, buffers: buffers), expecting: Int64(request.dataLength))
        case .write(let sector, let buffers):
            roundBytes &+= request.dataLength
            begin(
                .write(offset: sector * BlockRequest.sectorSize, buffers: buffers), expecting: Int64(request.dataLength)
            )
        case .flush:
            statistics.flushes.add()
            begin(.flush, expecting: 0)
        case .getID(let buffer):
            let id = Array(device.configuration.id.utf8.prefix(BlockRequest.idLength))
            let padded =
                id + [UInt8](repeating: 0, count: max(0, min(Int(buffer.length), BlockRequest.idLength) - id.count))
            try? memory.write(Array(padded.prefix(Int(buffer.length))), at: buffer.address)
            slots[slot].usedLength += UInt32(min(Int(buffer.length), BlockRequest.idLength))
        case .discard(let ranges), .writeZeroes(let ranges, _):
            var zero = false
            if case .writeZeroes(_, let unmap) = request.kind { zero = !unmap }
            for range in ranges where range.count > 0 {
                begin(
                    .deallocate(
                        offset: range.sector * BlockRequest.sectorSize,
                        length: UInt64(range.count) * BlockRequest.sectorSize, zeroKeepingAllocation: zero),
                    expecting: 0)
            }
        }
        if slots[slot].pendingOperations == 0 { complete(slot: slot) }
    }

    /// One backend operation of the request in `slot` finished with `result` (bytes, 0, or -errno).
    private func finishOperation(slot: Int, result: Int32) {
        guard slots.indices.contains(slot), slots[slot].pendingOperations > 0 else { return }
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
        if request.failed { statistics.add(.errors) }
        try? memory.store(
            request.failed ? BlockRequest.statusIOError : BlockRequest.statusOK, at: request.statusAddress)
        context.queue.addUsed(head: request.head, length: request.failed ? 1 : request.usedLength)
        statistics.recordLatency(nanoseconds: clock.now() &- request.started)
        completedSinceInterrupt += 1
    }
}
