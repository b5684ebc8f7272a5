import Glibc
import Hypervisor
import Synchronization

/// The baseline executor (`--io-mode notify`): each handler gets its own thread, which sleeps in
/// poll(2) on the handler's wake descriptors. Every guest request costs a kick: an ioeventfd
/// write that KVM handles in the kernel (one VM exit, no exit to userspace).
public final class NotifyEngine: QueueEngine, Sendable {
    /// Work per pass before the thread looks at its stop signal again.
    static let budget = 256

    private final class Runner: Sendable {
        let handler: QueueHandler
        let stopSignal: EventFD
        /// Checked between passes, so a queue the guest keeps busy cannot hold off `stop`.
        let stopping = Atomic<Bool>(false)
        let thread = WorkerThread()

        init(handler: QueueHandler) throws {
            self.handler = handler
            stopSignal = try EventFD()
            handler.setGuestNotifications(enabled: true)
            try thread.start(name: handler.name) { [self] in run() }
        }

        private func run() {
            while !stopping.load(ordering: .acquiring) {
                if handler.poll(budget: NotifyEngine.budget) > 0 { continue }
                if handler.prepareToSleep() { continue }
                var fds = (handler.wakeDescriptors + [stopSignal.fd]).map {
                    pollfd(fd: $0, events: Int16(POLLIN), revents: 0)
                }
                guard poll(&fds, nfds_t(fds.count), -1) >= 0 || errno == EINTR else { return }
                if fds[fds.count - 1].revents != 0 { return }
            }
        }

        func stop() {
            stopping.store(true, ordering: .releasing)
            stopSignal.signal()
            thread.join()
        }
    }

    private let runners = Lock<[ObjectIdentifier: Runner]>([:])

    /// A notify thread sleeps whenever its queue has nothing to do, and a held interrupt is
    /// signalled before it sleeps, so there is nothing to coalesce across.
    public let interruptCoalescing: InterruptCoalescingPolicy? = nil

    public init() {}

    public func attach(_ handlers: [QueueHandler]) throws {
        var started: [QueueHandler] = []
        do {
            for handler in handlers {
                let runner = try Runner(handler: handler)
                runners.withLock { $0[ObjectIdentifier(handler)] = runner }
                started.append(handler)
            }
        } catch {
            detach(started)
            throw error
        }
    }

    public func detach(_ handlers: [QueueHandler]) {
        for handler in handlers {
            runners.withLock { $0.removeValue(forKey: ObjectIdentifier(handler)) }?.stop()
        }
    }
}
