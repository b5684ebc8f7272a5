import VirtioDevices
import XCTest

@testable import VMM

/// What statistics and /metrics make of a queue's latency buckets.
final class LatencyMetricsTests: XCTestCase {
    func snapshot(_ values: [UInt64]) -> LatencyBuckets.Snapshot {
        let buckets = LatencyBuckets()
        for value in values { buckets.record(nanoseconds: value) }
        return buckets.snapshot
    }

    /// 900 requests at 2 µs, 90 at 20 µs, 10 at 1 ms: the percentiles fall in those buckets.
    func testPercentilesComeFromTheBuckets() {
        let values =
            Array(repeating: UInt64(2_000), count: 900) + Array(repeating: 20_000, count: 90)
            + Array(repeating: 1_000_000, count: 10)
        let summary = LatencySummary(snapshot(values))
        XCTAssertEqual(summary.count, 1000)
        let sum: UInt64 = 900 * 2_000 + 90 * 20_000 + 10 * 1_000_000
        XCTAssertEqual(summary.meanNanoseconds, sum / 1000)
        XCTAssertEqual(Double(summary.p50Nanoseconds), 2_000, accuracy: 2_000 * 0.125)
        XCTAssertEqual(Double(summary.p90Nanoseconds), 2_000, accuracy: 2_000 * 0.125)
        XCTAssertEqual(Double(summary.p99Nanoseconds), 20_000, accuracy: 20_000 * 0.125)
        XCTAssertEqual(Double(summary.p999Nanoseconds), 1_000_000, accuracy: 1_000_000 * 0.125)
        XCTAssertEqual(Double(summary.maxNanoseconds), 1_000_000, accuracy: 1_000_000 * 0.125)
        XCTAssertEqual(LatencySummary(snapshot([])).p99Nanoseconds, 0, "no requests: zeros")
    }

    /// Prometheus buckets are cumulative, exact at their bounds, and end with +Inf = the count.
    func testHistogramBucketsAreCumulativeAndExact() {
        let histogram = PrometheusExposition.latencyHistogram(snapshot([1_023, 1_024, 2_047, 5_000, 1 << 31]))
        let counts = Dictionary(uniqueKeysWithValues: histogram)
        XCTAssertEqual(counts["1.024e-06"], 1, "only 1023 ns is below 1024 ns")
        XCTAssertEqual(counts["2.048e-06"], 3)
        XCTAssertEqual(counts["8.192e-06"], 4)
        XCTAssertEqual(counts["1.073741824"], 4, "2^31 ns is beyond the last finite bound")
        XCTAssertEqual(counts["+Inf"], 5)
        XCTAssertEqual(histogram.map(\.1), histogram.map(\.1).sorted(), "cumulative")
    }
}
