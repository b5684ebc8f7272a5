import Glibc

/// CLOCK_MONOTONIC in nanoseconds (a vDSO call, no system call): the time base of polling windows
/// and interrupt coalescing, and of interrupt redirection's sampling. Inlinable: side cores read it
/// on every round.
public enum MonotonicClock {
    @inlinable
    public static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
