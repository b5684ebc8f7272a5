import Hypervisor
import Synchronization
@testable import VirtioDevices

/// A queue handler with scripted work, recording what executors asked of it.
final class FakeQueueHandler: QueueHandler, @unchecked Sendable {
    // @unchecked: its tests set the script and read the budgets on the thread that polls it.
    let name: String
    /// Work each successive poll reports; 0 once the script runs out.
    var script: [Int]
    /// What the next prepareToSleep returns (work arrived while kicks were being re-enabled).
    var workWhenPreparingToSleep = false
    private(set) var budgets: [Int] = []
    private(set) var notificationChanges: [Bool] = []
    private(set) var sleepPreparations = 0
    var wakeDescriptors: [Int32] = [-1]
    var requestsHandled: UInt64 = 0
    var awaitsKernelThreads = false
    /// Runs in each poll (a test's clock moving while the handler works).
    var onPoll: (() -> Void)?

    init(name: String, script: [Int] = []) {
        self.name = name
        self.script = script
    }

    var notificationsEnabled: Bool? { notificationChanges.last }

    func poll(budget: Int) -> Int {
        budgets.append(budget)
        onPoll?()
        return script.isEmpty ? 0 : script.removeFirst()
    }

    func setGuestNotifications(enabled: Bool) { notificationChanges.append(enabled) }

    func prepareToSleep() -> Bool {
        sleepPreparations += 1
        defer { workWhenPreparingToSleep = false }
        return workWhenPreparingToSleep
    }
}

/// An engine that records attach and detach calls.
final class RecordingEngine: QueueEngine, Sendable {
    let interruptCoalescing: InterruptCoalescingPolicy? = nil
    let events = Lock<[String]>([])
    func attach(_ handlers: [QueueHandler]) throws { events.withLock { $0.append("attach \(handlers.map(\.name))") } }
    func detach(_ handlers: [QueueHandler]) { events.withLock { $0.append("detach \(handlers.map(\.name))") } }
}
