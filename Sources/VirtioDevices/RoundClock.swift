import Hypervisor

/// A poll round's time for request latencies: the clock is read at most once per round and only
/// when a request needs it, so an idle poll reads none (clock reads were ~4% of a side core's
/// time in `hvctl bench`'s profile). Latencies are therefore in whole rounds: what a request
/// waited for the device (a backend, a full TAP, a guest without buffers), not within a round.
struct RoundClock {
    private var time: UInt64?

    mutating func now() -> UInt64 {
        if let time { return time }
        let now = MonotonicClock.now()
        time = now
        return now
    }

    /// A new round: the next `now()` reads the clock.
    mutating func nextRound() { time = nil }
}
