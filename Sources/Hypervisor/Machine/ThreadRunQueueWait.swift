import Glibc

/// How long a thread of this process has waited for a CPU while runnable, from
/// `/proc/self/task/<tid>/schedstat` (its second field, `run_delay`, in nanoseconds). The kernel
/// adds a wait when the thread gets its CPU back, so a fast-growing value says the thread keeps
/// losing its CPU, not that it is off one at this moment.
public final class ThreadRunQueueWait: Sendable {
    private let fd: Int32

    /// nil when the kernel offers no schedstat for the thread.
    public init?(threadID: Int32) {
        fd = open("/proc/self/task/\(threadID)/schedstat", O_RDONLY | O_CLOEXEC)
        if fd < 0 { return nil }
    }

    deinit { close(fd) }

    public func nanoseconds() -> UInt64? {
        var buffer = [UInt8](repeating: 0, count: 96)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        let fields = buffer[..<count].split(separator: UInt8(ascii: " "))
        guard fields.count >= 2 else { return nil }
        return UInt64(String(decoding: fields[1], as: UTF8.self))
    }
}
