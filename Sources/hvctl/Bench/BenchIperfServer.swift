import Glibc
import Hypervisor

/// The host's end of `hvctl bench fio`'s tcp-stream: `iperf3 -s -1` (one test, then it exits) on a
/// port of this process, for one boot; `stop` ends it if the guest never came. What it printed
/// (whether a connection came, and from where) is kept for the error of a stream that failed.
final class BenchIperfServer {
    static let executable = "/usr/bin/iperf3"

    static var isInstalled: Bool { access(executable, X_OK) == 0 }

    /// A port of this process, away from iperf3's default (5201) that another server may hold and
    /// below Linux's ephemeral range (32768 up), where a client's socket may hold it.
    let port = 20_000 + Int(getpid() % 10_000)
    private let pids = Lock<Set<Int32>>([])
    /// Set by `stop`: a server not started yet is killed as it starts (BenchProcess asks).
    private let stopped = Lock<Int32?>(nil)
    /// Its last lines, kept as they come; `--forceflush`, or a killed server's would die in stdio's buffer.
    private let lines = Lock<[String]>([])
    private var thread: HostThread?

    init() throws {
        let (pids, stopped, port, lines) = (pids, stopped, port, lines)
        thread = try HostThread(name: "bench-iperf3") {
            _ = try? BenchProcess.run(
                Self.executable, ["-s", "-1", "-p", "\(port)", "--forceflush"], running: pids, interrupted: stopped
            ) { line in
                // Its separator lines say nothing.
                guard !line.allSatisfy({ $0.isWhitespace || $0 == "-" }) else { return }
                lines.withLock {
                    $0.append(line)
                    if $0.count > 4 { $0.removeFirst() }
                }
            }
        }
    }

    func stop() {
        stopped.withLock { $0 = SIGKILL }
        for pid in pids.withLock({ $0 }) { kill(pid, SIGKILL) }
        thread?.join()
        thread = nil
    }

    /// "; the host's iperf3 server said: " and its last lines, for an error.
    var said: String {
        let lines = lines.withLock { $0 }
        return "; the host's iperf3 server said: " + (lines.isEmpty ? "nothing" : lines.joined(separator: " | "))
    }

    deinit { stop() }
}
