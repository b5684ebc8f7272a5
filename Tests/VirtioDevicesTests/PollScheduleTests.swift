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

    /// The clock is a cost on the side core: poll mode never reads it, hybrid once a round after
    /// every poll, so a queue polled after a busy one is timed after its own poll (not before it).
    func testTheClockIsReadOnlyByHybridAndOnceARoundAfterThePolls() {
        var reads = 0
        let polling = PollSchedule(mode: .poll, budget: 4, pollMaxNanoseconds: 1_000)
        polling.add(FakeQueueHandler(name: "a", script: [1, 0]), now: clock.now)
        polling.add(FakeQueueHandler(name: "b"), now: clock.now)
        for _ in 0..<3 {
            _ = polling.round {
                reads += 1; return self.clock.now
            }
        }
        XCTAssertEqual(reads, 0)

        let hybrid = PollSchedule(mode: .hybrid, budget: 4, pollMaxNanoseconds: 100_000)
        let quiet = FakeQueueHandler(name: "quiet")
        let busy = FakeQueueHandler(name: "busy", script: [4])
        hybrid.add(quiet, now: clock.now)
        hybrid.add(busy, now: clock.now)
        let window = hybrid.entries[1].window.current
        // The busy queue's poll takes a whole window: its work ends then, and it stays awake.
        busy.onPoll = { self.clock.now += window }
        _ = hybrid.round {
            reads += 1; return self.clock.now
        }
        XCTAssertEqual(reads, 1)
        busy.onPoll = nil
        _ = hybrid.round {
            reads += 1; return self.clock.now
        }
        XCTAssertEqual(reads, 2)
        XCTAssertEqual(hybrid.entries.map(\.awake), [false, true], "idle for its window: only the quiet one")
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

    /// Without --poll-max-us the bound sizes itself: kicks that come within `reach` bounds of a
    /// sleep (a slow guest's gaps) grow it up to the ceiling, and the window follows; kicks far
    /// apart (an idle guest) bring it back to the floor.
    func testTheBoundGrowsWithKicksSoonAfterASleepAndFallsBackWhenTheyAreFarApart() {
        var window = AdaptivePollWindow(maximum: 256_000, ceiling: 16_384_000)
        XCTAssertEqual(window.maximum, 256_000)
        // Gaps of 1 ms, four times the floor: a fixed bound would sleep through each one.
        // Each kick comes 1 ms after the queue's last work, so the window's length before it sleeps.
        var sleeps = 0
        while window.current < 1_000_000 && sleeps < 16 {
            window.queueWoke(afterSleeping: 1_000_000 - window.current, byKick: true)
            sleeps += 1
        }
        XCTAssertGreaterThanOrEqual(window.current, 1_000_000, "the window now covers the gaps")
        XCTAssertLessThanOrEqual(sleeps, 6)
        for _ in 0..<20 { window.queueWoke(afterSleeping: 1_000_000, byKick: true) }
        XCTAssertEqual(window.maximum, 16_384_000, "bounded by the ceiling")
        for _ in 0..<10 { window.queueWoke(afterSleeping: 1_000_000_000, byKick: true) }
        XCTAssertEqual(window.maximum, 256_000, "an idle guest's bound is the floor again")
        XCTAssertLessThanOrEqual(window.current, 256_000)
    }

    /// A completion or a TAP waking the queue is no exit saved: the bound stays where it is.
    func testOnlyKicksMoveTheBound() {
        var window = AdaptivePollWindow(maximum: 256_000, ceiling: 16_384_000)
        for _ in 0..<10 { window.queueWoke(afterSleeping: 500_000, byKick: false) }
        XCTAssertEqual(window.maximum, 256_000)
        var fixed = AdaptivePollWindow(maximum: 256_000)
        for _ in 0..<10 { fixed.queueWoke(afterSleeping: 500_000, byKick: true) }
        XCTAssertEqual(fixed.maximum, 256_000, "--poll-max-us fixes the bound")
    }

    /// The schedule passes the ceiling to each queue's window and tells it what woke the queue.
    func testTheScheduleSizesEachWindowFromKicks() {
        let schedule = PollSchedule(mode: .hybrid, budget: 4, pollMaxNanoseconds: 100_000, pollWindowCeiling: 800_000)
        let handler = FakeQueueHandler(name: "a")
        schedule.add(handler, now: clock.now)
        for byKick in [false, true, true] {
            clock.now += 1_000_000
            _ = schedule.round(now: clock.read)
            XCTAssertEqual(schedule.sleepingCount, 1)
            clock.now += 300_000
            schedule.wake(at: 0, now: clock.now, byKick: byKick)
        }
        XCTAssertEqual(schedule.entries[0].window.maximum, 400_000, "grown by the two kicks only")
    }

    func testZeroMaximumMeansSleepingAtOnce() {
        let window = AdaptivePollWindow(maximum: 0)
        XCTAssertEqual(window.current, 0)
    }
}
