import Histogram
import VirtioDevices

/// A queue's request latency distribution as statistics report it: count, mean and percentiles
/// in nanoseconds, from its `LatencyBuckets` merged into an HDR histogram (each bucket recorded
/// at its midpoint, so a percentile is within the bucket's 12.5% width of the truth).
public struct LatencySummary: Codable, Sendable, Equatable {
    public let count: UInt64
    public let meanNanoseconds: UInt64
    public let p50Nanoseconds: UInt64
    public let p90Nanoseconds: UInt64
    public let p99Nanoseconds: UInt64
    public let p999Nanoseconds: UInt64
    public let maxNanoseconds: UInt64

    /// Every summary starts from a copy of this one: hdrhistogram's initialiser works out its
    /// layout with libm's pow, whose code and tables, mapped for the API's first statistics
    /// request, kept ~400 KiB of libm resident (percentiles still call libm's ceil, one small
    /// window). `VMMRuntime` builds it with the VMs, before hvctl drops the pages that built
    /// them. Two significant digits (1%) are ample for buckets 12.5% wide and keep the resident
    /// copy at 28 KiB (three digits: 272 KiB).
    static let emptyHistogram = Histogram<UInt64>(
        highestTrackableValue: 1 << 42, numberOfSignificantValueDigits: .two)

    public init(_ snapshot: LatencyBuckets.Snapshot) {
        var histogram = Self.emptyHistogram
        for (index, requests) in snapshot.counts.enumerated() where requests > 0 {
            let low = LatencyBuckets.lowerBound(of: index)
            let high = index + 1 < LatencyBuckets.count ? LatencyBuckets.lowerBound(of: index + 1) : low
            _ = histogram.record(low + (high - low) / 2, count: requests)
        }
        let count = snapshot.requests
        self.init(histogram: histogram, meanNanoseconds: count == 0 ? 0 : snapshot.sum / count)
    }

    /// From percentiles another tool worked out (fio's), over `count` requests.
    public init(
        count: UInt64, meanNanoseconds: UInt64, p50Nanoseconds: UInt64, p90Nanoseconds: UInt64,
        p99Nanoseconds: UInt64, p999Nanoseconds: UInt64, maxNanoseconds: UInt64
    ) {
        self.count = count
        self.meanNanoseconds = meanNanoseconds
        self.p50Nanoseconds = p50Nanoseconds
        self.p90Nanoseconds = p90Nanoseconds
        self.p99Nanoseconds = p99Nanoseconds
        self.p999Nanoseconds = p999Nanoseconds
        self.maxNanoseconds = maxNanoseconds
    }

    /// From a histogram of nanoseconds whose mean was kept apart (a bucketed histogram's own is
    /// only as exact as its buckets); `maxNanoseconds` replaces the histogram's when known exactly.
    public init(histogram: Histogram<UInt64>, meanNanoseconds: UInt64, maxNanoseconds: UInt64? = nil) {
        count = histogram.totalCount
        self.meanNanoseconds = meanNanoseconds
        p50Nanoseconds = count == 0 ? 0 : histogram.valueAtPercentile(50)
        p90Nanoseconds = count == 0 ? 0 : histogram.valueAtPercentile(90)
        p99Nanoseconds = count == 0 ? 0 : histogram.valueAtPercentile(99)
        p999Nanoseconds = count == 0 ? 0 : histogram.valueAtPercentile(99.9)
        self.maxNanoseconds = count == 0 ? 0 : maxNanoseconds ?? histogram.max
    }
}
