import Glibc
import Hypervisor

/// Ends a boot of the bench guest that stops making progress: a guest that never reaches its first
/// load, or a load that runs well past its duration, is stopped (`expire`), and the bench says
/// which load hung instead of waiting for ever. The allowances are generous because the nested
/// rig is slow and its speed swings by 3x. `expire` is called from the watchdog's own thread.
final class FioWatchdog: Sendable {
    /// To boot and start the first load.
    static let bootNanoseconds: UInt64 = 300_000_000_000
    /// Past a load's duration, for it to end, and between the end of one load and the next.
    static let slackNanoseconds: UInt64 = 120_000_000_000

    private struct State {
        var deadline: UInt64
        var waitingFor: String
        var stopped = false
        var expired: String?
    }

    private let state: Lock<State>
    private let loadNanoseconds: UInt64
    private let slackNanoseconds: UInt64
    private let thread = Lock<HostThread?>(nil)

    /// What went wrong, once the watchdog has stopped the boot.
    var expired: String? { state.withLock { $0.expired } }

    init(
        loadSeconds: Int, bootNanoseconds: UInt64 = bootNanoseconds, slackNanoseconds: UInt64 = slackNanoseconds,
        expire: @escaping @Sendable (String) -> Void
    ) throws {
        loadNanoseconds = UInt64(max(loadSeconds, 0)) * 1_000_000_000
        self.slackNanoseconds = slackNanoseconds
        let state = Lock(State(deadline: MonotonicClock.now() + bootNanoseconds, waitingFor: "its first load"))
        self.state = state
        let started = try HostThread(name: "bench-watchdog") {
            while true {
                let message = state.withLock { state -> String? in
                    guard !state.stopped, state.expired == nil, MonotonicClock.now() >= state.deadline else {
                        return nil
                    }
                    state.expired = "the bench guest made no progress: it did not reach \(state.waitingFor) in time"
                    return state.expired
                }
                if let message { expire(message) }
                // Once expired, told again each second: a VMM that was not yet running then is stopped too.
                let (stopped, expired) = state.withLock { ($0.stopped, $0.expired) }
                if stopped { return }
                if message == nil, let expired {
                    expire(expired)
                    usleep(1_000_000)
                } else {
                    usleep(100_000)
                }
            }
        }
        thread.withLock { $0 = started }
    }

    /// Moves the deadline on at each of the guest's marks and outputs (`loads` names them).
    func note(_ event: FioConsole.Event, loads: [FioLoad]) {
        func name(_ load: Int) -> String {
            loads.indices.contains(load - 1)
                ? "\(loads[load - 1].workload.label) qd=\(loads[load - 1].qd)" : "load \(load)"
        }
        let now = MonotonicClock.now()
        state.withLock { state in
            switch event {
            case .start(let load), .go(let load):
                state.deadline = now + loadNanoseconds + slackNanoseconds
                state.waitingFor = "the end of \(name(load))"
            case .end(let load, _):
                state.deadline = now + slackNanoseconds
                state.waitingFor = "the output of \(name(load))"
            case .output(let load, _):
                state.deadline = now + slackNanoseconds
                state.waitingFor = load < loads.count ? "the start of \(name(load + 1))" : "its power-off"
            }
        }
    }

    /// Runs a boot (`body`) under the watchdog and stops it after; a boot it expired fails with
    /// what it waited for and `consoleEnd` (the boot's last console lines), whatever `body` did.
    func guarding<T>(consoleEnd: () -> String, _ body: () throws -> T) throws -> T {
        let result = Result { try body() }
        stop()
        if let expired { throw BenchError(expired + consoleEnd()) }
        return try result.get()
    }

    /// Ends the watchdog's thread (once; later calls do nothing).
    func stop() {
        state.withLock { $0.stopped = true }
        thread.withLock { thread in
            defer { thread = nil }
            return thread
        }?.join()
    }

    deinit { stop() }
}
