/// How long a side core keeps polling an idle queue before it re-enables the guest's kicks and
/// lets the queue sleep (ES2's hybrid I/O handling, QEMU's adaptive polling).
///
/// The window adapts to what sleeping cost: a wake that came soon after the queue went to sleep
/// (within `maximum`) means a longer window would have caught that request, so the window doubles;
/// a long sleep means the polling before it was wasted, so it halves.
///
/// The bound `maximum` sizes itself too when a `ceiling` above `floor` is given (hybrid mode
/// without `--poll-max-us`): a fixed bound suits one speed of guest only. The 256 µs default fits
/// request gaps on hardware, but where a guest runs slower (the nested rig: every exit ~50× dearer)
/// each gap outlasts it, every request costs a kick, and hybrid lost to QEMU with the default.
/// So a guest's kick that came within `reach` bounds of the queue going to sleep (a bound that
/// many times longer would have saved that exit) doubles the bound, up to `ceiling`; a kick later
/// than that halves it, down to `floor`. Only kicks move it: they are what polling saves, whereas
/// polling through a slow disk's completions or a quiet TAP would only burn the core. An idle
/// guest's kicks are far apart, so its bound stays at the floor and it pays at most the floor's
/// polling per kick, as before.
public struct AdaptivePollWindow: Equatable {
    public let minimum: UInt64
    /// The bound the window grows to: `floor` unless kicks moved it.
    public private(set) var maximum: UInt64
    public let floor: UInt64
    public let ceiling: UInt64
    /// How many bounds after sleeping a kick may come and still grow the bound.
    public static let reach: UInt64 = 4
    /// The current window in nanoseconds.
    public private(set) var current: UInt64

    /// A window bounded by `maximum`; with `ceiling` above it, the bound sizes itself between the two.
    public init(maximum: UInt64, minimum: UInt64 = 1_000, ceiling: UInt64? = nil) {
        self.maximum = maximum
        floor = maximum
        self.ceiling = max(maximum, ceiling ?? maximum)
        self.minimum = min(minimum, maximum)
        current = max(self.minimum, maximum / 4)
    }

    /// The queue was asleep for `duration` nanoseconds before a wake descriptor fired; `byKick`:
    /// the guest's doorbell, rather than a backend's completion or a TAP.
    public mutating func queueWoke(afterSleeping duration: UInt64, byKick: Bool = true) {
        var soon = duration <= maximum
        if byKick && ceiling > floor {
            // Within reach: the bound grows, and the window with it (halving it now would undo
            // the step the bound just took).
            if duration / Self.reach <= maximum {
                maximum = maximum > ceiling / 2 ? ceiling : maximum * 2
                soon = true
            } else {
                maximum = max(floor, maximum / 2)
            }
        }
        if soon {
            current = min(maximum, max(minimum, current > maximum / 2 ? maximum : current * 2))
        } else {
            current = max(minimum, current / 2)
        }
        current = min(current, maximum)
    }
}
