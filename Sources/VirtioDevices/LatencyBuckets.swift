import CKVM

/// Request latencies of one queue in fixed log-linear buckets: exact below 16 ns, then four
/// buckets per power of two (at most 12.5% wide), up to 2^40 ns (18 minutes; more is counted
/// in the last). The one thread at a time that completes the queue's requests records without
/// locks, allocation or locked instructions (relaxed loads and stores into one fixed block: a
/// bucket array of Counter objects cost a retain and an atomic add each); readers take a snapshot
/// at any time, and statistics render it through hdrhistogram-swift.
public final class LatencyBuckets: @unchecked Sendable {
    // @unchecked: `storage` is written by one thread at a time and read by others only through
    // relaxed atomic loads (ckvm_atomics.h).
    public static let count = 16 + (40 - 4) * 4
    /// `count` buckets, then the sum of every latency recorded.
    private let storage: UnsafeMutablePointer<UInt64>

    public init() {
        storage = .allocate(capacity: Self.count + 1)
        storage.initialize(repeating: 0, count: Self.count + 1)
    }

    deinit { storage.deallocate() }

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
        ckvm_single_writer_add_u64(storage + Self.index(of: nanoseconds), 1)
        ckvm_single_writer_add_u64(storage + Self.count, nanoseconds)
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

        /// What was recorded between `earlier` (a snapshot of the same buckets) and this one.
        public func since(_ earlier: Snapshot) -> Snapshot {
            Snapshot(
                counts: counts.indices.map {
                    counts[$0] &- (earlier.counts.indices.contains($0) ? earlier.counts[$0] : 0)
                },
                sum: sum &- earlier.sum)
        }
    }

    public var snapshot: Snapshot {
        Snapshot(
            counts: (0..<Self.count).map { ckvm_load_relaxed_u64(storage + $0) },
            sum: ckvm_load_relaxed_u64(storage + Self.count))
    }
}
