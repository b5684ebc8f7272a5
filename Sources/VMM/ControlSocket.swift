import FoundationEssentials
import Glibc
import Hypervisor
import VirtioDevices

/// A request on the control socket: one JSON object per line, e.g. `{"command":"stats"}`.
public struct ControlRequest: Codable, Sendable {
    public let command: String
    /// For "side-cores": how many side cores should serve the queues, or `auto` true for the
    /// I/O core manager to decide (with --side-cores auto).
    public var count: Int?
    public var auto: Bool?

    public init(command: String, count: Int? = nil, auto: Bool? = nil) {
        self.command = command
        self.count = count
        self.auto = auto
    }
}

/// A control socket path that cannot be used, and why.
public struct ControlSocketError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}

/// A run's control socket: a Unix stream socket that answers one JSON line per request line.
/// `stats` returns the statistics document of the running VMs (their exit reads "running");
/// `side-cores` with a `count` changes how many side cores serve the queues. A thread named
/// `api` serves one client at a time.
public final class ControlSocket: Sendable {
    private let path: String
    private let listener: Int32
    private let thread = WorkerThread()
    private let runtime: VMMRuntime

    /// Listens on `path`, which must not exist yet.
    public init(path: String, runtime: VMMRuntime) throws {
        self.path = path
        self.runtime = runtime
        var address = try Self.address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlSocketError(path: path, reason: String(cString: strerror(errno))) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0, listen(fd, 8) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ControlSocketError(path: path, reason: reason)
        }
        listener = fd
        try thread.start(name: "api") { [self] in serve() }
    }

    /// Stops serving and removes the socket file.
    public func stop() {
        // shutdown wakes the thread blocked in accept(2).
        shutdown(listener, Int32(SHUT_RDWR))
        thread.join()
        close(listener)
        unlink(path)
    }

    /// The socket address of `path` (1 to 107 bytes).
    public static func address(_ path: String) throws -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw ControlSocketError(path: path, reason: "a socket path must be 1 to 107 bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in bytes.enumerated() { buffer[index] = byte }
        }
        return address
    }

    private func serve() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            handle(client)
            close(client)
        }
    }

    /// Answers each request line until the client closes (or sends more than 64 KiB without a newline).
    private func handle(_ client: Int32) {
        var pending: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(client, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return }
            pending += buffer[0..<count]
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(pending[..<newline])
                pending.removeSubrange(...newline)
                guard send(reply(to: line) + [UInt8(ascii: "\n")], to: client) else { return }
            }
            guard pending.count <= 1 << 16 else { return }
        }
    }

    private func reply(to line: [UInt8]) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        func failure(_ message: String) -> [UInt8] {
            Array((try? encoder.encode(["error": message])) ?? Data("{}".utf8))
        }
        guard let request = try? JSONDecoder().decode(ControlRequest.self, from: Data(line)) else {
            return failure("a request is one JSON object per line, e.g. {\"command\":\"stats\"}")
        }
        switch request.command {
        case "stats":
            do {
                return Array(try encoder.encode(try runtime.statistics()))
            } catch {
                return failure("cannot read the statistics: \(error)")
            }
        case "side-cores":
            guard let sideCores = runtime.sideCores else {
                return failure("no side cores: hvctl runs with --io-mode notify")
            }
            if request.auto == true {
                guard let coreManager = runtime.coreManager else {
                    return failure("no I/O core manager: hvctl runs without --side-cores auto")
                }
                coreManager.setAutomatic(true)
                return Array((try? encoder.encode(["sideCores": "auto"])) ?? Data("{}".utf8))
            }
            guard let count = request.count else { return failure("side-cores needs a count or auto") }
            do {
                let moves = try sideCores.resize(to: count)
                // A count chosen by hand holds until `auto` is asked for again.
                runtime.coreManager?.setAutomatic(false)
                return Array((try? encoder.encode(["sideCores": count, "moved": moves])) ?? Data("{}".utf8))
            } catch {
                return failure("\(error)")
            }
        default:
            return failure("unknown command '\(request.command)' (known: stats, side-cores)")
        }
    }

    private func send(_ bytes: [UInt8], to client: Int32) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes {
                Glibc.send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return false }
            offset += written
        }
        return true
    }
}
