import Histogram

/// The latency histogram the iobench guest hands over after a block run (`iobench: histogram
/// bI=N ...`): each request it timed, in log-linear buckets. Below 8 ns bucket I holds I ns; above,
/// 8 buckets per power of two: bucket 8e+s holds [(8+s) << (e-3), (9+s) << (e-3)) ns.
struct IOBenchHistogram: Equatable, Sendable, Codable {
    /// The buckets taken (the guest's go up to 64 * 8; above 2^62 ns none is real, and their
    /// bounds would not fit in 64 bits).
    static let bucketCount = 62 * 8

    /// Requests per bucket index; only the buckets that hold any.
    private(set) var counts: [Int: UInt64]

    init(counts: [Int: UInt64] = [:]) { self.counts = counts.filter { $0.value > 0 } }

    /// Parses the guest's histogram line; nil when `line` is not one, or a bucket is out of range.
    init?(line: String) {
        guard let fields = IOBenchLine(line: line, kind: "histogram")?.fields else { return nil }
        var counts: [Int: UInt64] = [:]
        for (key, count) in fields {
            guard key.first == "b", let index = Int(key.dropFirst()), (0..<Self.bucketCount).contains(index) else {
                return nil
            }
            counts[index] = count
        }
        self.init(counts: counts)
    }

    /// The requests it holds.
    var requests: UInt64 { counts.values.reduce(0, &+) }

    /// The lowest and highest nanoseconds bucket `index` holds.
    static func bounds(of index: Int) -> ClosedRange<UInt64> {
        guard index >= 8 else { return UInt64(index)...UInt64(index) }
        let exponent = UInt64(index / 8)
        let step = UInt64(index % 8)
        return ((8 + step) << (exponent - 3))...(((9 + step) << (exponent - 3)) - 1)
    }

    /// Every run's requests together.
    static func merged(_ histograms: [IOBenchHistogram]) -> IOBenchHistogram {
        var counts: [Int: UInt64] = [:]
        for histogram in histograms {
            for (index, count) in histogram.counts { counts[index, default: 0] &+= count }
        }
        return IOBenchHistogram(counts: counts)
    }

    /// Into hdrhistogram, each bucket's requests at its midpoint (so a percentile is within the
    /// bucket's 12.5% width of the truth).
    var hdrHistogram: Histogram<UInt64> {
        var histogram = Histogram<UInt64>(highestTrackableValue: 1 << 62, numberOfSignificantValueDigits: .three)
        for (index, count) in counts.sorted(by: { $0.key < $1.key }) {
            let bounds = Self.bounds(of: index)
            _ = histogram.record(bounds.lowerBound + (bounds.upperBound - bounds.lowerBound) / 2, count: count)
        }
        return histogram
    }

    /// The non-empty buckets in order, for the JSON record.
    var buckets: [Bucket] {
        counts.sorted { $0.key < $1.key }.map {
            let bounds = Self.bounds(of: $0.key)
            return Bucket(lowNanoseconds: bounds.lowerBound, highNanoseconds: bounds.upperBound, count: $0.value)
        }
    }

    /// In JSON: the non-empty buckets, each with its bounds.
    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(buckets)
    }

    /// From a record's buckets (`hvctl bench-report`); each bucket's lower bound names it.
    init(from decoder: Decoder) throws {
        var counts: [Int: UInt64] = [:]
        for bucket in try decoder.singleValueContainer().decode([Bucket].self) {
            let index = Self.index(of: bucket.lowNanoseconds)
            guard (0..<Self.bucketCount).contains(index), Self.bounds(of: index).lowerBound == bucket.lowNanoseconds
            else {
                throw DecodingError.dataCorrupted(
                    .init(
                        codingPath: decoder.codingPath,
                        debugDescription: "no bucket starts at \(bucket.lowNanoseconds) ns"))
            }
            counts[index, default: 0] &+= bucket.count
        }
        self.init(counts: counts)
    }

    /// The bucket that holds `nanoseconds`, as the guest's blk.c files it.
    static func index(of nanoseconds: UInt64) -> Int {
        guard nanoseconds >= 8 else { return Int(nanoseconds) }
        let exponent = 63 - nanoseconds.leadingZeroBitCount
        return exponent * 8 + Int((nanoseconds >> UInt64(exponent - 3)) & 7)
    }

    struct Bucket: Codable, Equatable {
        let lowNanoseconds: UInt64
        let highNanoseconds: UInt64
        let count: UInt64
    }
}
