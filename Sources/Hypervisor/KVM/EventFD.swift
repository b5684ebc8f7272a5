import CKVM
import Glibc

/// A Linux eventfd: the doorbell KVM rings for a guest kick (ioeventfd) and that we ring to
/// inject an interrupt (irqfd).
public final class EventFD: Sendable {
    public let fd: Int32

    /// A non-blocking eventfd can be drained without waiting (`drain`), e.g. by a polling side core.
    public init(nonBlocking: Bool = false) throws {
        fd = ckvm_eventfd(nonBlocking ? 1 : 0)
        if fd < 0 { throw KVMError(.eventfd) }
    }

    deinit { close(fd) }

    /// Adds 1 to the counter (wakes a reader, or makes KVM inject through an irqfd).
    public func signal() {
        var one: UInt64 = 1
        while write(fd, &one, 8) < 0 && errno == EINTR {}
    }

    /// Blocks until the counter is non-zero, then returns and clears it (the number of signals).
    public func wait() -> UInt64 {
        var value: UInt64 = 0
        while read(fd, &value, 8) < 0 && errno == EINTR {}
        return value
    }

    /// Returns and clears the counter without waiting: 0 when nothing was signalled. Only for a
    /// non-blocking eventfd (a blocking one would wait here).
    public func drain() -> UInt64 {
        var value: UInt64 = 0
        while read(fd, &value, 8) < 0 {
            if errno != EINTR { return 0 }
        }
        return value
    }
}
