@testable import VirtioDevices
import XCTest

/// The side cores' polling policy with a fake clock: budgets, round robin, hybrid sleep and wake.
final class PollScheduleTests: XCTestCase {
    /// A clock the test moves by hand (nanoseconds).
    final class FakeClock {
        var now: UInt64 = 1_000_000
        func read() -> UInt64 { now }
    }

    let clock = FakeClock()

    func testAddedHandlersArePolledWithKicksOff() {
        let schedule = PollSchedule(mode: .poll, budget: 8, pollMaxNanoseconds: 100_000)
        let handler = FakeQueueHandler(name: "a", script: [3])
        schedule.add(handler, now: clock.now)
        XCTAssertEqual(handler.notificationsEnabled, false)
        XCTAssertEqual(schedule.round(now: clock.read), 3)
        XCTAssertEqual(handler.budgets, [8])
    }

    func testEveryHandlerGetsOneBudgetPerRoundSoABusyQueueCannotStarveOthers() {
        let schedule = PollSchedule(mode: .poll, budget: 4, pollMaxNanoseconds: 100_000)
        let busy = FakeQueueHandler(name: "busy", script: Array(repeating: 4, count: 10))
        let quiet = FakeQueueHandler(name: "quiet", script: [0, 1, 0])
        schedule.add(busy, now: clock.now)
        schedule.add(quiet, now: clock.now)
        for _ in 0..<3 { _ = schedule.round(now: clock.read) }
        XCTAssertEqual(busy.budgets, [4, 4, 4])
        XCTAssertEqual(quiet.budgets, [4, 4, 4], "polled every round although the other queue always had work")
        XCTAssertEqual(schedule.entries.map(\.productivePolls), [3, 1])
    }

    func testPollModeNeverSleeps() {
        let schedule = PollSchedule(mode: .poll, budget: 4, pollMaxNanoseconds: 1_000)
        let handler = FakeQueueHandler(name: "a")
        schedule.add(handler, now: clock.now)
        for _ in 0..<10 {
            clock.now += 1_000_000
            _ = schedule.round(now: clock.read)
        }
        XCTAssertEqual(schedule.sleepingCount, 0)
        XCTAssertEqual(handler.sleepPreparations, 0)
        XCTAssertEqual(handler.notificationsEnabled, false)
    }

    /// The side core yields its CPU while an awake queue's requests wait on kernel threads; a
    /// sleeping queue's do not count (the core blocks then anyway).
    func testRequestsWaitingOnKernelThreadsAreSeenOnlyForAwakeQueues() {
        let schedule = PollSchedule(mode: .hybrid, budget: 4, pollMaxNanoseconds: 100_000)
        let writer = FakeQueueHandler(name: "writer")
        let quiet = FakeQueueHandler(name: "quiet")
        schedule.add(writer, now: clock.now)
        schedule.add(quiet, now: clock.now)
        XCTAssertFalse(schedule.awaitsKernelThreads)
        writer.awaitsKernelThreads = true
        XCTAssertTrue(schedule.awaitsKernelThreads)
        clock.now += 1_000_000_000
        _ = schedule.round(now: clock.read)
        XCTAssertEqual(schedule.sleepingCount, 2)
        XCTAssertFalse(schedule.awaitsKernelThreads, "asleep, its completions wake the core")
    }

    func testHybridSleepsAfterTheIdleWindowWithKicksBackOn() {
        let schedule = PollSchedule(mode: .hybrid, budget: 4, pollMaxNanoseconds: 100_000)
        let handler = FakeQueueHandler(name: "a", script: [1])
        schedule.add(handler, now: clock.now)
        let window = schedule.entries[0].window.current
        _ = schedule.round(now: clock.read)
        clock.now += window - 1
        _ = schedule.round(now: clock.read)
        XCTAssertEqual(schedule.sleepingCount, 0, "still inside the window")
        clock.now += 1
        _ = schedule.round(now: clock.read)
        XCTAssertEqual(schedule.sleepingCount, 1)
        XCTAssertEqual(handler.notificationsEnabled, true, "a sleeping queue is woken by the guest's kick")
        XCTAssertEqual(handler.sleepPreparations, 1)
        XCTAssertEqual(schedule.entries[0].wakeDescriptors, [-1])
        let polls = handler.budgets.count
        _ = schedule.round(now: clock.read)
        XCTAssertEqual(handler.budgets.count, polls, "a sleeping handler is not polled")
    }

    func testWorkSeenWhileReEnablingKicksKeepsTheQueuePolled() {
        let schedule = PollSchedule(mode: .hybrid, budget: 4, pollMaxNanoseconds: 100_000)
        let handler = FakeQueueHandler(name: "a")
        schedule.add(handler, now: clock.now)
        handler.workWhenPreparingToSleep = true
        clock.now += 200_000
        _ = schedule.round(now: clock.read)
        XCTAssertEqual(schedule.sleepingCount, 0, "a chain published during the switch must not be left behind")
        XCTAssertEqual(handler.notificationChanges, [false, true, false])
    }

    func testWakeResumesPollingWithKicksOff() {
        let schedule = PollSchedule(mode: .hybrid, budget: 4, pollMaxNanoseconds: 100_000)
        let handler = FakeQueueHandler(name: "a")
        schedule.add(handler, now: clock.now)
        clock.now += 200_000
        _ = schedule.round(now: clock.read)
        XCTAssertEqual(schedule.sleepingCount, 1)
        clock.now += 10_000
        schedule.wake(at: 0, now: clock.now)
        XCTAssertEqual(schedule.sleepingCount, 0)
        XCTAssertEqual(handler.notificationsEnabled, false)
        handler.script = [2]
        XCTAssertEqual(schedule.round(now: clock.read), 2)
    }

    func testRemoveGivesKicksBackAndCountsPendingKicks() {
        let schedule = PollSchedule(mode: .poll, budget: 4, pollMaxNanoseconds: 0)
        let handler = FakeQueueHandler(name: "a")
        schedule.add(handler, now: clock.now)
        schedule.remove(handler)
        XCTAssertTrue(schedule.entries.isEmpty)
        XCTAssertEqual(handler.notificationsEnabled, true)
        XCTAssertEqual(handler.sleepPreparations, 1, "kicks that arrived while polled are read and counted")
    }

    func testWindowGrowsWhenAKickFollowsSoonAndShrinksAfterALongSleep() {
        var window = AdaptivePollWindow(maximum: 64_000, minimum: 1_000)
        XCTAssertEqual(window.current, 16_000)
        window.queueWoke(afterSleeping: 5_000)
        XCTAssertEqual(window.current, 32_000)
        window.queueWoke(afterSleeping: 5_000)
        window.queueWoke(afterSleeping: 5_000)
        XCTAssertEqual(window.current, 64_000, "bounded by --poll-max-us")
        for _ in 0..<10 { window.queueWoke(afterSleeping: 10_000_000) }
        XCTAssertEqual(window.current, 1_000, "bounded below")
    }

    func testZeroMaximumMeansSleepingAtOnce() {
        let window = AdaptivePollWindow(maximum: 0)
        XCTAssertEqual(window.current, 0)
    }
}
