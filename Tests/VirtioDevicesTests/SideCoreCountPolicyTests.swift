@testable import VirtioDevices
import XCTest

/// IOcm's grow/shrink decision from the side cores' busy shares, with hysteresis.
final class SideCoreCountPolicyTests: XCTestCase {
    func testBusyCoresGrowAfterThePatienceRunsOut() {
        var policy = SideCoreCountPolicy(minimum: 1, maximum: 3)
        XCTAssertEqual(policy.decide(active: 1, busyShares: [0.9]), 1)
        XCTAssertEqual(policy.decide(active: 1, busyShares: [0.9]), 1)
        XCTAssertEqual(policy.decide(active: 1, busyShares: [0.9]), 2, "third busy sample in a row")
        XCTAssertEqual(policy.decide(active: 2, busyShares: [0.9, 0.8]), 2, "the count starts over after a change")
    }

    func testAQuietSampleResetsTheCount() {
        var policy = SideCoreCountPolicy(minimum: 1, maximum: 3)
        _ = policy.decide(active: 1, busyShares: [0.9])
        _ = policy.decide(active: 1, busyShares: [0.9])
        XCTAssertEqual(policy.decide(active: 1, busyShares: [0.5]), 1)
        XCTAssertEqual(policy.decide(active: 1, busyShares: [0.9]), 1, "hysteresis: needs three in a row again")
    }

    func testWorkThatFitsInOneCoreFewerShrinks() {
        var policy = SideCoreCountPolicy(minimum: 1, maximum: 3)
        for _ in 0..<2 { XCTAssertEqual(policy.decide(active: 3, busyShares: [0.3, 0.2, 0.1]), 3) }
        XCTAssertEqual(policy.decide(active: 3, busyShares: [0.3, 0.2, 0.1]), 2, "0.6 of work fits in 2 cores under 0.35 each")
        for _ in 0..<5 { XCTAssertEqual(policy.decide(active: 2, busyShares: [0.3, 0.2]), 2, "0.5 does not fit in 1 core under 0.35") }
    }

    func testBoundsHold() {
        var policy = SideCoreCountPolicy(minimum: 1, maximum: 2)
        for _ in 0..<10 { XCTAssertLessThanOrEqual(policy.decide(active: 2, busyShares: [1, 1]), 2) }
        for _ in 0..<10 { XCTAssertGreaterThanOrEqual(policy.decide(active: 1, busyShares: [0]), 1) }
    }
}
