import Glibc
import Hypervisor

/// SIGINT and SIGTERM for the whole process, taken on one thread: every other thread blocks
/// them (`blockInThisThread` before any thread starts), so a signal never lands in a vCPU or a
/// side core. `stop()` ends and joins the thread.
final class SignalWatcher: Sendable {
    static let watched = [SIGINT, SIGTERM]

    private let thread = WorkerThread()
    private let received = Lock<Int32?>(nil)
    private let stopping = Lock(false)

    /// Blocks the watched signals in the calling thread and every thread it starts from now on.
    static func blockInThisThread() {
        var set = signalSet()
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    private static func signalSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        for signal in watched { sigaddset(&set, signal) }
        return set
    }

    /// Calls `onSignal` with the first watched signal the process gets, on the watcher's thread.
    init(onSignal: @escaping @Sendable (Int32) -> Void) throws {
        try thread.start(name: "signals") { [received, stopping] in
            var set = Self.signalSet()
            var signal: Int32 = 0
            while sigwait(&set, &signal) != 0 {}
            // `stop` wakes the thread with a signal of its own: that one stops nothing.
            if stopping.withLock({ $0 }) { return }
            received.withLock { $0 = signal }
            onSignal(signal)
        }
    }

    /// The signal that stopped the VMs, if one did.
    var signal: Int32? { received.withLock { $0 } }

    /// Ends the thread (if no signal came, by sending it SIGTERM, which it then ignores) and joins it.
    func stop() {
        stopping.withLock { $0 = true }
        _ = thread.withRunningThread { pthread_kill($0.handle, SIGTERM) }
        thread.join()
    }
}
