import Glibc

/// A value behind a mutual-exclusion lock, on `pthread_mutex_t`.
///
/// The VMM's locks are these rather than the standard library's `Mutex`: on Linux that one takes
/// its futex inside a library ThreadSanitizer does not instrument, so TSan sees no ordering and
/// reports every access it guards as a race (checked with a two-thread counter). pthread mutexes
/// are intercepted by TSan, so what `make tsan` reports is real.
public final class Lock<Value>: @unchecked Sendable {
    // @unchecked: `value` is only reached inside `withLock`, with `mutex` held.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the value, the lock held.
    @inline(__always)
    public func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
