import CKVM
import FoundationEssentials
import Glibc
import Hypervisor

/// A child process run to its end with its output (stdout and stderr together) collected;
/// its pid is in `running` meanwhile (with those of the others running at the same time, one per
/// VM with `--vms`), so Ctrl-C can end them.
enum BenchProcess {
    /// `interrupted` is asked once the pid is in `running`: a signal that came before is not missed.
    /// `onLine` sees each line of output as it comes (without its CR LF), on this thread.
    static func run(
        _ executable: String, _ arguments: [String], running: Lock<Set<Int32>>? = nil, interrupted: Lock<Int32?>? = nil,
        onLine: ((String) -> Void)? = nil
    ) throws -> String {
        try runWithStatus(executable, arguments, running: running, interrupted: interrupted, onLine: onLine).output
    }

    /// As `run`, with the child's exit status (its code, or 128 + the signal that ended it).
    static func runWithStatus(
        _ executable: String, _ arguments: [String], running: Lock<Set<Int32>>? = nil, interrupted: Lock<Int32?>? = nil,
        onLine: ((String) -> Void)? = nil
    ) throws -> (output: String, status: Int32) {
        var pipeFDs: [Int32] = [0, 0]
        // Close-on-exec from the start: not inherited by the children other threads start meanwhile
        // (QEMU's VMs with --vms); the dup2s below are.
        guard ckvm_pipe_cloexec(&pipeFDs) == 0 else {
            throw BenchError("\(executable): \(String(cString: strerror(errno)))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 2)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        // hvctl blocks SIGINT and SIGTERM in every thread (SignalWatcher): the child gets them back.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
        var pid: pid_t = 0
        let status = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        close(pipeFDs[1])
        guard status == 0 else {
            close(pipeFDs[0])
            throw BenchError("\(executable): \(String(cString: strerror(status)))")
        }
        running?.withLock { _ = $0.insert(pid) }
        if interrupted?.withLock({ $0 }) != nil { kill(pid, SIGKILL) }
        var output: [UInt8] = []
        var line: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(pipeFDs[0], &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            if let onLine {
                for byte in buffer[0..<count] {
                    if byte == UInt8(ascii: "\n") {
                        onLine(String(decoding: line, as: UTF8.self))
                        line.removeAll(keepingCapacity: true)
                    } else if byte != UInt8(ascii: "\r") && line.count < 4096 {
                        line.append(byte)
                    }
                }
            }
            // Keep the end: the result line comes last.
            output += buffer[0..<count]
            if output.count > 1 << 20 { output.removeFirst(output.count - (1 << 20)) }
        }
        close(pipeFDs[0])
        var exitStatus: Int32 = 0
        while waitpid(pid, &exitStatus, 0) < 0 && errno == EINTR {}
        running?.withLock { _ = $0.remove(pid) }
        // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import as functions.
        let code = exitStatus & 0x7F == 0 ? (exitStatus >> 8) & 0xFF : 128 + (exitStatus & 0x7F)
        return (String(decoding: output, as: UTF8.self), code)
    }
}
