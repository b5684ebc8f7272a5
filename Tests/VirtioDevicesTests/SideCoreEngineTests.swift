import CKVM
import Dispatch
import Synchronization
import TestSupport
@testable import VirtioDevices
import XCTest

/// Side cores as threads: placement on the least loaded core, and moving handlers when the
/// number of active cores changes.
final class SideCoreEngineTests: XCTestCase {
    /// A handler that counts its polls and remembers which thread polled it last (called from a
    /// side core or notify thread, read by the test).
    final class CountingHandler: QueueHandler, Sendable {
        let name: String
        let polls = Atomic<Int>(0)
        let lastPoller = Atomic<Int32>(0)
        init(name: String) { self.name = name }
        func poll(budget: Int) -> Int {
            lastPoller.store(ckvm_thread_id(), ordering: .relaxed)
            polls.add(1, ordering: .relaxed)
            return 0
        }
        /// The name of the thread that polled it last ("side1", a notify thread's "zq0", ...).
        var pollerName: String? {
            let path = "/proc/self/task/\(lastPoller.load(ordering: .relaxed))/comm"
            return (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
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

    /// Handlers each core polls, by name: which thread polled each one last, once every handler
    /// has been polled many times since the caller's change (within 10 s).
    func served(_ engine: SideCoreEngine, _ handlers: [CountingHandler]) -> [[String]] {
        let before = handlers.map { $0.polls.load(ordering: .relaxed) }
        XCTAssertTrue(
            eventually(seconds: 10) {
                !zip(handlers, before).contains { $0.polls.load(ordering: .relaxed) < $1 + 2_000 }
            },
            "every handler is polled again after a change")
        let pollers = handlers.map { ($0.name, $0.pollerName) }
        return engine.cores.map { core in pollers.filter { $0.1 == core.name }.map(\.0) }
    }

    /// Asserts that no thread polls detached `handlers` any more: their counts stay put while a
    /// witness handler on every active core is polled many times.
    func assertNobodyPolls(
        _ handlers: [CountingHandler], _ engine: SideCoreEngine, file: StaticString = #filePath, line: UInt = #line
    ) {
        let polls = handlers.map { $0.polls.load(ordering: .relaxed) }
        let witnesses = (0..<engine.activeCount).map { CountingHandler(name: "witness\($0)") }
        XCTAssertNoThrow(try engine.attach(witnesses), file: file, line: line)
        XCTAssertEqual(
            served(engine, witnesses).map(\.count).filter { $0 > 0 }.count, engine.activeCount,
            "a witness on every active core", file: file, line: line)
        engine.detach(witnesses)
        XCTAssertEqual(
            handlers.map { $0.polls.load(ordering: .relaxed) }, polls, "detached handlers are not polled", file: file,
            line: line)
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
        assertNobodyPolls(handlers, engine)
    }

    /// A thread of this process with the given name exists (NotifyEngine names threads after handlers).
    func threadExists(_ name: String) -> Bool {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.contains { task in
            (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8))?.trimmingCharacters(
                in: .whitespacesAndNewlines) == name
        }
    }

    func testZeroSideCoresHandQueuesToNotifyThreadsAndBack() throws {
        let engine = try makeEngine(count: 0, maxCount: 2)
        defer { engine.stop() }
        let handlers = (0..<2).map { CountingHandler(name: "zq\($0)") }
        try engine.attach(handlers)
        XCTAssertEqual(engine.activeCount, 0)
        XCTAssertTrue(eventually { threadExists("zq0") && threadExists("zq1") }, "each queue has its notify thread")
        XCTAssertTrue(eventually { handlers.map(\.pollerName) == ["zq0", "zq1"] }, "no side core polls a queue")
        XCTAssertEqual(try engine.resize(to: 2), 2)
        XCTAssertEqual(served(engine, handlers).map(\.count), [1, 1])
        // Joined threads leave /proc a moment after pthread_join returns: wait for that, bounded.
        XCTAssertTrue(eventually { !threadExists("zq0") && !threadExists("zq1") }, "the notify threads ended")
        XCTAssertEqual(try engine.resize(to: 0), 2)
        XCTAssertTrue(eventually { threadExists("zq0") && threadExists("zq1") })
        XCTAssertTrue(
            eventually { handlers.map(\.pollerName) == ["zq0", "zq1"] }, "the notify threads poll them again")
        let requests = engine.requestsHandled
        XCTAssertGreaterThan(requests, 0)
        engine.detach(handlers)
        XCTAssertTrue(eventually { !threadExists("zq0") && !threadExists("zq1") }, "detach ended the notify threads")
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
