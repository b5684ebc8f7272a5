import Dispatch
import Synchronization
@testable import VirtioDevices
import XCTest

/// Side cores as threads: placement on the least loaded core, and moving handlers when the
/// number of active cores changes.
final class SideCoreEngineTests: XCTestCase {
    /// A handler that only counts its polls (called from a side core, read by the test).
    final class CountingHandler: QueueHandler, Sendable {
        let name: String
        let polls = Atomic<Int>(0)
        init(name: String) { self.name = name }
        func poll(budget: Int) -> Int {
            polls.add(1, ordering: .relaxed)
            return 0
        }
        func setGuestNotifications(enabled: Bool) {}
        func prepareToSleep() -> Bool { false }
        var wakeDescriptors: [Int32] { [] }
        var requestsHandled: UInt64 { UInt64(polls.load(ordering: .relaxed)) }
    }

    func makeEngine(count: Int, maxCount: Int) throws -> SideCoreEngine {
        var configuration = SideCoreConfiguration(mode: .poll, count: count, pollMaxNanoseconds: 0)
        configuration.maxCount = maxCount
        configuration.placement = .unpinned
        return try SideCoreEngine(configuration: configuration)
    }

    /// Handlers each core serves, by name, once the cores have published their counters.
    func served(_ engine: SideCoreEngine, _ handlers: [CountingHandler]) -> [[String]] {
        // Every handler gets polled again after a change; then the published lists are current.
        let before = handlers.map { $0.polls.load(ordering: .relaxed) }
        while zip(handlers, before).contains(where: { $0.polls.load(ordering: .relaxed) < $1 + 2_000 }) { usleep(1_000) }
        return engine.cores.map { core in core.currentHandlerNames }
    }

    func testHandlersSpreadWhenCoresAreAddedAndComeBackWhenRemoved() throws {
        let engine = try makeEngine(count: 1, maxCount: 3)
        defer { engine.stop() }
        let handlers = (0..<4).map { CountingHandler(name: "h\($0)") }
        try engine.attach(handlers)
        XCTAssertEqual(served(engine, handlers).map(\.count), [4, 0, 0])
        XCTAssertEqual(try engine.resize(to: 3), 2, "two handlers leave side0")
        XCTAssertEqual(served(engine, handlers).map(\.count), [2, 1, 1])
        XCTAssertEqual(try engine.resize(to: 1), 2)
        XCTAssertEqual(served(engine, handlers).map(\.count), [4, 0, 0])
        XCTAssertThrowsError(try engine.resize(to: 4))
        engine.detach(handlers)
        XCTAssertEqual(engine.cores.map(\.load), [0, 0, 0])
    }

    /// A thread of this process with the given name exists (NotifyEngine names threads after handlers).
    func threadExists(_ name: String) -> Bool {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.contains { task in
            (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) == name
        }
    }

    /// Whether `condition` holds within 2 s (a new thread names itself once it runs).
    func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<2_000 where !condition() { usleep(1_000) }
        return condition()
    }

    func testZeroSideCoresHandQueuesToNotifyThreadsAndBack() throws {
        let engine = try makeEngine(count: 0, maxCount: 2)
        defer { engine.stop() }
        let handlers = (0..<2).map { CountingHandler(name: "zq\($0)") }
        try engine.attach(handlers)
        XCTAssertEqual(engine.activeCount, 0)
        XCTAssertEqual(engine.cores.map(\.load), [0, 0], "no side core serves a queue")
        XCTAssertTrue(eventually { threadExists("zq0") && threadExists("zq1") }, "each queue has its notify thread")
        XCTAssertEqual(try engine.resize(to: 2), 2)
        XCTAssertEqual(served(engine, handlers).map(\.count), [1, 1])
        XCTAssertFalse(threadExists("zq0") || threadExists("zq1"), "the notify threads ended")
        XCTAssertEqual(try engine.resize(to: 0), 2)
        XCTAssertEqual(engine.cores.map(\.load), [0, 0])
        XCTAssertTrue(eventually { threadExists("zq0") && threadExists("zq1") })
        let requests = engine.requestsHandled
        XCTAssertGreaterThan(requests, 0)
        engine.detach(handlers)
        XCTAssertFalse(threadExists("zq0") || threadExists("zq1"))
        XCTAssertGreaterThanOrEqual(engine.requestsHandled, requests, "detached handlers' requests still count")
    }
}

/// One VM's queue that keeps its executor busy cannot hold up another VM's detach.
final class EngineIsolationTests: XCTestCase {
    /// A handler whose poll blocks until the test lets it go, or always reports work.
    final class StuckHandler: QueueHandler, Sendable {
        let name: String
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let blocks: Bool
        private let first = Atomic<Bool>(true)
        init(name: String, blocks: Bool) {
            self.name = name
            self.blocks = blocks
        }
        func poll(budget: Int) -> Int {
            if blocks && first.exchange(false, ordering: .relaxed) {
                entered.signal()
                release.wait()
            }
            return budget  // always busy
        }
        func setGuestNotifications(enabled: Bool) {}
        func prepareToSleep() -> Bool { true }
        var wakeDescriptors: [Int32] { [] }
        var requestsHandled: UInt64 { 0 }
    }

    func testDetachOnASharedSideCoreWaitsOnlyForThatHandler() throws {
        var configuration = SideCoreConfiguration(mode: .poll, count: 1, pollMaxNanoseconds: 0)
        configuration.placement = .unpinned
        let engine = try SideCoreEngine(configuration: configuration)
        defer { engine.stop() }
        let stuck = StuckHandler(name: "vm-a", blocks: true)
        let other = SideCoreEngineTests.CountingHandler(name: "vm-b")
        try engine.attach([other])
        try engine.attach([stuck])
        XCTAssertEqual(stuck.entered.wait(timeout: .now() + 5), .success, "vm-a's poll is under way")
        // The core is inside vm-a's poll now; vm-b's detach must not wait for the round.
        let detached = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            engine.detach([other])
            detached.signal()
        }
        XCTAssertEqual(detached.wait(timeout: .now() + 5), .success, "vm-b detached while vm-a's poll was stuck")
        let polls = other.polls.load(ordering: .relaxed)
        stuck.release.signal()
        engine.detach([stuck])
        usleep(20_000)
        XCTAssertEqual(other.polls.load(ordering: .relaxed), polls, "a detached handler is never polled again")
    }

    func testANotifyThreadWhoseQueueNeverEmptiesStillStops() throws {
        let engine = NotifyEngine()
        let busy = StuckHandler(name: "busyq", blocks: false)
        try engine.attach([busy])
        let detached = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            engine.detach([busy])
            detached.signal()
        }
        XCTAssertEqual(detached.wait(timeout: .now() + 5), .success, "detach returned although work never ran out")
    }
}
