import CKVM
import Glibc
import Hypervisor

/// A block queue's disk file through the queue's own io_uring: operations are prepared into the
/// submission queue, submitted once per poll, and reaped from the completion queue; the ring's
/// descriptor wakes a sleeping executor.
final class IOUringBlockBackend: BlockBackend {
    private let fd: Int32
    private let memory: GuestMemory
    private let ring: OpaquePointer
    /// Each slot's iovec array, preallocated (`segmentsPerSlot` entries) so the hot path does
    /// not allocate.
    private let iovecs: UnsafeMutableBufferPointer<iovec>
    private let segmentsPerSlot: Int
    /// Operations prepared and not yet reaped (submitted or still queued): at most `capacity`, so
    /// the submission queue never fills and the completion queue (twice its size) never
    /// overflows, whatever mix of requests the guest sends.
    private var operationsInFlight = 0
    private let capacity: Int

    /// For `slots` requests in flight of at most `segmentsPerSlot` buffers each, and at most
    /// `capacity` operations at once. `name` names the queue in errors.
    init(fd: Int32, memory: GuestMemory, slots: Int, segmentsPerSlot: Int, capacity: Int, name: String) throws {
        self.fd = fd
        self.memory = memory
        self.segmentsPerSlot = segmentsPerSlot
        self.capacity = capacity
        var error: Int32 = 0
        guard let ring = ckvm_uring_create(UInt32(capacity), &error) else {
            throw KVMError(.ioUringSetup(queue: name), errno: error)
        }
        // Not fatal: without the registration each operation looks the descriptor up.
        _ = ckvm_uring_register_file(ring, fd)
        self.ring = ring
        iovecs = .allocate(capacity: slots * segmentsPerSlot)
    }

    deinit {
        ckvm_uring_destroy(ring)
        iovecs.deallocate()
    }

    var completionDescriptor: Int32? { ckvm_uring_fd(ring) }

    func hasRoom(for count: Int) -> Bool { operationsInFlight + count <= capacity }

    func start(_ operation: BlockOperation, slot: Int) -> BlockOperationStart {
        // `hasRoom` was asked before the request started, so a prep call cannot fail for lack of
        // entries; if one does anyway, the request fails and nothing waits for it.
        let tag = UInt64(slot)
        let prepared: Int32
        switch operation {
        case .read(let offset, let buffers), .write(let offset, let buffers):
            // A driver that ignores seg_max gets an error rather than an unbounded iovec array.
            guard buffers.count <= segmentsPerSlot, (slot + 1) * segmentsPerSlot <= iovecs.count else {
                return .refused
            }
            let vectors = UnsafeMutableBufferPointer(
                rebasing: iovecs[(slot * segmentsPerSlot)..<((slot + 1) * segmentsPerSlot)])
            let filled = memory.fillIOVecs(
                vectors, from: buffers.lazy.map { (address: $0.address, length: UInt64($0.length)) })
            guard filled.count == buffers.count else { return .refused }
            let isRead: Int32
            if case .read = operation { isRead = 0 } else { isRead = 1 }
            prepared = ckvm_uring_prep_rw(ring, isRead, fd, vectors.baseAddress, UInt32(filled.count), offset, tag)
        case .flush:
            prepared = ckvm_uring_prep_fdatasync(ring, fd, tag)
        case .deallocate(let offset, let length, let zeroKeepingAllocation):
            let mode = zeroKeepingAllocation ? ckvm_falloc_zero_range() : ckvm_falloc_punch_hole()
            prepared = ckvm_uring_prep_fallocate(ring, fd, mode, offset, length, tag)
        }
        guard prepared == 0 else { return .refused }
        operationsInFlight += 1
        return .started
    }

    /// An operation the kernel cannot take now (EAGAIN, EBUSY) stays queued for the next poll;
    /// any other failure means the ring is unusable.
    func submit() -> String? {
        guard ckvm_uring_unsubmitted(ring) > 0 else { return nil }
        let result = ckvm_uring_submit(ring)
        guard result < 0, result != -EAGAIN, result != -EBUSY else { return nil }
        return "io_uring submit failed: \(String(cString: strerror(-result)))"
    }

    func reap(everything: Bool, _ finished: (Int, Int32) -> Void) -> Int {
        var tag: UInt64 = 0
        var result: Int32 = 0
        var count = 0
        if everything {
            // Queued operations the kernel never took are not in flight; they go with the ring.
            while operationsInFlight > Int(ckvm_uring_unsubmitted(ring)) {
                // Only a broken ring fails a wait (EINTR is retried).
                guard ckvm_uring_next_completion(ring, 1, &tag, &result) == 1 else { break }
                operationsInFlight -= 1
                finished(Int(truncatingIfNeeded: tag), result)
                count += 1
            }
        } else {
            while ckvm_uring_next_completion(ring, 0, &tag, &result) == 1 {
                operationsInFlight -= 1
                finished(Int(truncatingIfNeeded: tag), result)
                count += 1
            }
        }
        return count
    }

    var hasPendingWork: Bool { ckvm_uring_completions_ready(ring) > 0 || ckvm_uring_unsubmitted(ring) > 0 }
}
