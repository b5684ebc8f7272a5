import XCTest

@testable import VirtioDevices

final class LatencyBucketsTests: XCTestCase {
    /// Every value lands in the bucket whose range holds it, buckets are contiguous and no wider
    /// than 25% of their lower bound above 16 ns (12.5% around the midpoint).
    func testBucketsPartitionTheValues() {
        for index in 0..<(LatencyBuckets.count - 1) {
            let low = LatencyBuckets.lowerBound(of: index)
            let high = LatencyBuckets.lowerBound(of: index + 1)
            XCTAssertLessThan(low, high, "bucket \(index)")
            XCTAssertEqual(LatencyBuckets.index(of: low), index)
            XCTAssertEqual(LatencyBuckets.index(of: high - 1), index)
            if low >= 16 { XCTAssertLessThanOrEqual(Double(high - low), 0.25 * Double(low), "bucket \(index)") }
        }
        XCTAssertEqual(LatencyBuckets.index(of: 0), 0)
        XCTAssertEqual(LatencyBuckets.index(of: .max), LatencyBuckets.count - 1, "beyond the range: the last bucket")
    }

    func testRecordedLatenciesAreCountedAndSummed() {
        let buckets = LatencyBuckets()
        for value: UInt64 in [5, 1_030, 1_100, 1_000_000] { buckets.record(nanoseconds: value) }
        let snapshot = buckets.snapshot
        XCTAssertEqual(snapshot.requests, 4)
        XCTAssertEqual(snapshot.sum, 1_002_135)
        XCTAssertEqual(snapshot.counts[LatencyBuckets.index(of: 1_030)], 2, "1030 and 1100 share a bucket")
    }
}
