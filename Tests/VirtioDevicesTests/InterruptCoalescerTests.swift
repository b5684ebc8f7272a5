@testable import VirtioDevices
import XCTest

/// Adaptive interrupt coalescing with a fake clock (nanoseconds).
final class InterruptCoalescerTests: XCTestCase {
    let policy = InterruptCoalescingPolicy(maxDelay: 64_000, maxCount: 8)

    /// A coalescer that has seen a completion every 4 µs for a while, with nothing held.
    func warmedUp() -> (InterruptCoalescer, UInt64) {
        var coalescer = InterruptCoalescer(policy: policy)
        var now: UInt64 = 0
        for _ in 0..<64 {
            now += 4_000
            _ = coalescer.completed(1, now: now, moreExpected: true)
        }
        _ = coalescer.flush()
        return (coalescer, now)
    }

    func testTheLastCompletionBeforeIdleIsNeverHeld() {
        var coalescer = InterruptCoalescer(policy: policy)
        XCTAssertTrue(coalescer.completed(1, now: 0, moreExpected: false))
        XCTAssertEqual(coalescer.pending, 0)
    }

    func testASlowQueueGetsAnInterruptPerCompletion() {
        var coalescer = InterruptCoalescer(policy: policy)
        var now: UInt64 = 0
        for _ in 0..<10 {
            now += 500_000  // 2000 completions per second: far apart compared to maxDelay
            XCTAssertTrue(coalescer.completed(1, now: now, moreExpected: true))
        }
        XCTAssertEqual(coalescer.threshold, 1)
    }

    func testAFastQueueGathersCompletionsUpToTheThreshold() {
        var (coalescer, now) = warmedUp()
        XCTAssertEqual(coalescer.threshold, 8, "16 would fit in 64 µs; bounded by maxCount")
        var raised = 0
        for _ in 0..<32 {
            now += 4_000
            if coalescer.completed(1, now: now, moreExpected: true) { raised += 1 }
        }
        XCTAssertEqual(raised, 4, "one interrupt per 8 completions")
    }

    func testAHeldCompletionWaitsAtMostMaxDelay() {
        var (coalescer, now) = warmedUp()
        XCTAssertFalse(coalescer.completed(1, now: now, moreExpected: true))
        XCTAssertFalse(coalescer.due(now: now + 63_999, moreExpected: true))
        XCTAssertTrue(coalescer.due(now: now + 64_000, moreExpected: true))
        XCTAssertFalse(coalescer.due(now: now + 200_000, moreExpected: true), "nothing left to signal")
    }

    func testQueueGoingIdleReleasesHeldCompletions() {
        var (coalescer, now) = warmedUp()
        XCTAssertFalse(coalescer.completed(2, now: now, moreExpected: true))
        XCTAssertTrue(coalescer.due(now: now + 1, moreExpected: false))
    }

    func testFlushReportsWhetherAnythingWasHeld() {
        var coalescer = InterruptCoalescer(policy: policy)
        XCTAssertFalse(coalescer.flush())
        for step in 1...64 { _ = coalescer.completed(1, now: UInt64(step) * 4_000, moreExpected: true) }
        _ = coalescer.flush()
        XCTAssertFalse(coalescer.completed(1, now: 300_000, moreExpected: true))
        XCTAssertTrue(coalescer.flush())
        XCTAssertFalse(coalescer.flush())
    }
}
