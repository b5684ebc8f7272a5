/// One storage operation of a block request, at byte offsets of the disk.
enum BlockOperation {
    /// Into the guest's buffers (each checked to lie in guest RAM when the chain was walked).
    case read(offset: UInt64, buffers: BufferList)
    case write(offset: UInt64, buffers: BufferList)
    case flush
    /// DISCARD (punch a hole) or WRITE_ZEROES (zero the range, keeping it allocated unless unmap).
    case deallocate(offset: UInt64, length: UInt64, zeroKeepingAllocation: Bool)
}

/// What starting an operation did.
enum BlockOperationStart: Equatable {
    /// Under way: its result comes through `reap`.
    case started
    /// Done already, with this result (bytes moved, 0, or -errno).
    case completed(Int32)
    /// Not started (no room, a buffer that cannot be mapped): the request fails.
    case refused
}

/// Where one block queue's requests are carried out: the disk file through the queue's own
/// io_uring (`IOUringBlockBackend`), or nowhere (`NullBlockBackend`, for measuring the I/O path
/// alone). Driven only by the queue's handler, so by one thread at a time.
protocol BlockBackend: AnyObject {
    /// Readable while completed operations wait to be reaped (level-triggered), so a sleeping
    /// executor wakes for them; nil when operations complete as they start.
    var completionDescriptor: Int32? { get }
    /// Whether `count` more operations fit now.
    func hasRoom(for count: Int) -> Bool
    /// Starts `operation` for the request in `slot` (what `reap` reports it under).
    func start(_ operation: BlockOperation, slot: Int) -> BlockOperationStart
    /// Hands started operations to the kernel; the reason when the backend can no longer work.
    func submit() -> String?
    /// Reports each completed operation's slot and result (bytes, 0, or -errno) and returns how
    /// many. `everything`: waits until every operation the kernel took has completed, so none
    /// writes guest RAM later (a reset, the VMM's shutdown).
    @discardableResult
    func reap(everything: Bool, _ finished: (_ slot: Int, _ result: Int32) -> Void) -> Int
    /// Whether completions or operations not yet submitted wait (checked before sleeping).
    var hasPendingWork: Bool { get }
}

/// The null backend: every operation succeeds at once and moves nothing (reads leave the guest's
/// buffers as they were); what is left is the cost of the I/O path itself.
final class NullBlockBackend: BlockBackend {
    var completionDescriptor: Int32? { nil }
    func hasRoom(for count: Int) -> Bool { true }

    func start(_ operation: BlockOperation, slot: Int) -> BlockOperationStart {
        switch operation {
        case .read(_, let buffers), .write(_, let buffers):
            return .completed(Int32(clamping: buffers.reduce(0) { $0 + Int64($1.length) }))
        case .flush, .deallocate:
            return .completed(0)
        }
    }

    func submit() -> String? { nil }
    func reap(everything: Bool, _ finished: (Int, Int32) -> Void) -> Int { 0 }
    var hasPendingWork: Bool { false }
}
