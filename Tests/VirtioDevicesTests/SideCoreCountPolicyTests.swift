@testable import VirtioDevices
import XCTest

/// IOcm's grow/shrink decision from the side cores' busy shares and the request rate, with hysteresis.
final class SideCoreCountPolicyTests: XCTestCase {
    /// A sample with these busy shares and no requests counted.
    func busy(_ shares: [Double]) -> SideCoreCountPolicy.Sample { .init(busyShares: shares, requestRate: 0) }

    func testBusyCoresGrowAfterThePatienceRunsOut() {
        var policy = SideCoreCountPolicy(minimum: 1, maximum: 3, pollWindowSeconds: 0.001)
        XCTAssertEqual(policy.decide(active: 1, sample: busy([0.9])), 1)
        XCTAssertEqual(policy.decide(active: 1, sample: busy([0.9])), 1)
        XCTAssertEqual(policy.decide(active: 1, sample: busy([0.9])), 2, "third busy sample in a row")
        XCTAssertEqual(policy.decide(active: 2, sample: busy([0.9, 0.8])), 2, "the count starts over after a change")
    }

    func testAQuietSampleResetsTheCount() {
        var policy = SideCoreCountPolicy(minimum: 1, maximum: 3, pollWindowSeconds: 0.001)
        _ = policy.decide(active: 1, sample: busy([0.9]))
        _ = policy.decide(active: 1, sample: busy([0.9]))
        XCTAssertEqual(policy.decide(active: 1, sample: busy([0.5])), 1)
        XCTAssertEqual(policy.decide(active: 1, sample: busy([0.9])), 1, "hysteresis: needs three in a row again")
    }

    func testWorkThatFitsInOneCoreFewerShrinks() {
        var policy = SideCoreCountPolicy(minimum: 1, maximum: 3, pollWindowSeconds: 0.001)
        for _ in 0..<2 { XCTAssertEqual(policy.decide(active: 3, sample: busy([0.3, 0.2, 0.1])), 3) }
        XCTAssertEqual(
            policy.decide(active: 3, sample: busy([0.3, 0.2, 0.1])), 2, "0.6 of work fits in 2 cores under 0.35 each")
        for _ in 0..<5 {
            XCTAssertEqual(
                policy.decide(active: 2, sample: busy([0.3, 0.2])), 2, "0.5 does not fit in 1 core under 0.35")
        }
    }

    func testBoundsHold() {
        var policy = SideCoreCountPolicy(minimum: 1, maximum: 2, pollWindowSeconds: 0.001)
        for _ in 0..<10 { XCTAssertLessThanOrEqual(policy.decide(active: 2, sample: busy([1, 1])), 2) }
        for _ in 0..<10 {
            XCTAssertGreaterThanOrEqual(
                policy.decide(active: 1, sample: busy([0])), 1, "minimum 1: never notify threads")
        }
    }

    func testRequestsCloserThanThePollWindowBringASideCoreAndRareOnesTakeItAway() {
        // A 10 ms window: a side core pays off from 100 requests/s, notify threads below 25/s.
        var policy = SideCoreCountPolicy(minimum: 0, maximum: 2, pollWindowSeconds: 0.010)
        for _ in 0..<5 { XCTAssertEqual(policy.decide(active: 0, sample: .init(busyShares: [], requestRate: 90)), 0) }
        for _ in 0..<2 { XCTAssertEqual(policy.decide(active: 0, sample: .init(busyShares: [], requestRate: 150)), 0) }
        XCTAssertEqual(
            policy.decide(active: 0, sample: .init(busyShares: [], requestRate: 150)), 1,
            "third sample at 1.5 requests per window")
        // Between the thresholds the count holds (hysteresis), whatever the busy share.
        for _ in 0..<5 {
            XCTAssertEqual(policy.decide(active: 1, sample: .init(busyShares: [0.1], requestRate: 50)), 1)
        }
        for _ in 0..<2 {
            XCTAssertEqual(policy.decide(active: 1, sample: .init(busyShares: [0.01], requestRate: 10)), 1)
        }
        XCTAssertEqual(
            policy.decide(active: 1, sample: .init(busyShares: [0.01], requestRate: 10)), 0,
            "0.1 requests per window: notify threads")
    }

    func testABusyCoreIsNotTakenAwayForItsRate() {
        // One core busy above the grow mark grows to two even when the minimum is 0.
        var policy = SideCoreCountPolicy(minimum: 0, maximum: 2, pollWindowSeconds: 0.010)
        for _ in 0..<2 {
            XCTAssertEqual(policy.decide(active: 1, sample: .init(busyShares: [0.9], requestRate: 5000)), 1)
        }
        XCTAssertEqual(policy.decide(active: 1, sample: .init(busyShares: [0.9], requestRate: 5000)), 2)
    }

    func testLongRoundsGrowEvenWhenTheCoresAreNotBusyEnough() {
        // 40% busy, but its rounds take 150 µs: a request waits that long for its queue's turn.
        var policy = SideCoreCountPolicy(minimum: 1, maximum: 2, pollWindowSeconds: 0.001)
        let slow = SideCoreCountPolicy.Sample(
            busyShares: [0.4], requestRate: 50_000, pickupDelays: [150e-6], handlersPerBusyRound: [3])
        for _ in 0..<2 { XCTAssertEqual(policy.decide(active: 1, sample: slow), 1) }
        XCTAssertEqual(policy.decide(active: 1, sample: slow), 2, "pickup delay above the 100 µs target three times")
        let quick = SideCoreCountPolicy.Sample(
            busyShares: [0.4], requestRate: 50_000, pickupDelays: [20e-6], handlersPerBusyRound: [3])
        for _ in 0..<5 {
            XCTAssertEqual(policy.decide(active: 1, sample: quick), 1, "short rounds at 40% busy: no reason to grow")
        }
    }

    func testCoresAreNotMergedWhenTheMergedRoundsWouldBeTooLong() {
        // Little busy time (0.2 in all fits one core), but two 40 µs rounds merged onto one core
        // make 80 µs, over half the target: keep both.
        var policy = SideCoreCountPolicy(minimum: 1, maximum: 2, pollWindowSeconds: 0.001)
        let longRounds = SideCoreCountPolicy.Sample(
            busyShares: [0.1, 0.1], requestRate: 1000, pickupDelays: [40e-6, 40e-6])
        for _ in 0..<5 { XCTAssertEqual(policy.decide(active: 2, sample: longRounds), 2) }
        let shortRounds = SideCoreCountPolicy.Sample(
            busyShares: [0.1, 0.1], requestRate: 1000, pickupDelays: [10e-6, 10e-6])
        for _ in 0..<2 { XCTAssertEqual(policy.decide(active: 2, sample: shortRounds), 2) }
        XCTAssertEqual(
            policy.decide(active: 2, sample: shortRounds), 1, "20 µs merged rounds fit under half the target")
    }

    func testOneSlowHandlerOrRareRequestsDoNotGrowForLatency() {
        var policy = SideCoreCountPolicy(minimum: 0, maximum: 4, pollWindowSeconds: 0.001)
        // Long rounds, but one handler in each: its own service time, which no other core splits.
        let alone = SideCoreCountPolicy.Sample(
            busyShares: [0.4], requestRate: 50_000, pickupDelays: [500e-6], handlersPerBusyRound: [1])
        for _ in 0..<5 { XCTAssertEqual(policy.decide(active: 1, sample: alone), 1) }
        // Long shared rounds, but requests so rare that the queues go back to notify threads.
        let rare = SideCoreCountPolicy.Sample(
            busyShares: [0.01], requestRate: 10, pickupDelays: [500e-6], handlersPerBusyRound: [2])
        for _ in 0..<2 { XCTAssertEqual(policy.decide(active: 1, sample: rare), 1) }
        XCTAssertEqual(policy.decide(active: 1, sample: rare), 0, "quiet wins over the pickup delay")
    }
}
