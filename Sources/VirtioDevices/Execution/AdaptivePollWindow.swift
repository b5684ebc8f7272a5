/// How long a side core keeps polling an idle queue before it re-enables the guest's kicks and
/// lets the queue sleep (ES2's hybrid I/O handling, QEMU's adaptive polling).
///
/// The window adapts to what sleeping cost: a kick that came soon after the queue went to sleep
/// (within `maximum`) means a longer window would have caught that request without an exit, so the
/// window doubles; a long sleep means the polling before it was wasted, so it halves.
public struct AdaptivePollWindow: Equatable {
    public let minimum: UInt64
    public let maximum: UInt64
    /// The current window in nanoseconds.
    public private(set) var current: UInt64

    public init(maximum: UInt64, minimum: UInt64 = 1_000) {
        self.maximum = maximum
        self.minimum = min(minimum, maximum)
        current = max(self.minimum, maximum / 4)
    }

    /// The queue was asleep for `duration` nanoseconds before a kick woke it.
    public mutating func queueWoke(afterSleeping duration: UInt64) {
        if duration <= maximum {
            current = min(maximum, max(minimum, current &* 2))
        } else {
            current = max(minimum, current / 2)
        }
    }
}
