import Hypervisor

/// Request latencies of one queue in fixed log-linear buckets: exact below 16 ns, then four
/// buckets per power of two (at most 12.5% wide), up to 2^40 ns (18 minutes; more is counted
/// in the last). The thread completing requests records without locks or allocation (relaxed
/// atomic adds); readers take a snapshot at any time, and statistics render it through
/// hdrhistogram-swift.
public final class LatencyBuckets: Sendable {
    public static let count = 16 + (40 - 4) * 4
    private let buckets: [Counter] = (0..<LatencyBuckets.count).map { _ in Counter() }
    private let total = Counter()

    public init() {}

    /// The bucket of `nanoseconds`.
    @inlinable
    public static func index(of nanoseconds: UInt64) -> Int {
        guard nanoseconds >= 16 else { return Int(nanoseconds) }
        let octave = 63 - nanoseconds.leadingZeroBitCount  // >= 4
        let sub = Int((nanoseconds >> UInt64(octave - 2)) & 3)
        return min(16 + (octave - 4) * 4 + sub, count - 1)
    }

    /// The smallest value of bucket `index`; the bucket ends where the next begins.
    public static func lowerBound(of index: Int) -> UInt64 {
        guard index >= 16 else { return UInt64(index) }
        let octave = (index - 16) / 4 + 4
        let sub = UInt64((index - 16) % 4)
        return (4 + sub) << UInt64(octave - 2)
    }

    public func record(nanoseconds: UInt64) {
        buckets[Self.index(of: nanoseconds)].add()
        total.add(nanoseconds)
    }

    public struct Snapshot: Sendable, Equatable {
        /// Requests in each bucket.
        public var counts: [UInt64]
        /// The sum of every latency recorded, in nanoseconds.
        public var sum: UInt64
        public var requests: UInt64 { counts.reduce(0, +) }

        public init(counts: [UInt64], sum: UInt64) {
            self.counts = counts
            self.sum = sum
        }
    }

    public var snapshot: Snapshot {
        Snapshot(counts: buckets.map(\.count), sum: total.count)
    }
}
