import CKVM
import Glibc

/// An API socket path that cannot be used, and why.
public struct APISocketError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}

/// The Unix socket the API listens on: owner-only, replacing a stale socket left by a killed
/// hvctl, refusing one somebody still listens on.
public enum APISocket {
    /// A listening, non-blocking socket at `path`.
    static func listen(at path: String) throws -> Int32 {
        var address = try address(path)
        try removeIfStale(path, address: &address)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw APISocketError(path: path, reason: String(cString: strerror(errno))) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard bound == 0 else {
            let reason = errno == EADDRINUSE ? "exists and is not a socket" : String(cString: strerror(errno))
            close(fd)
            throw APISocketError(path: path, reason: reason)
        }
        // Owner-only before listen(2): nobody can connect in between.
        guard chmod(path, 0o600) == 0, Glibc.listen(fd, 16) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            unlink(path)
            throw APISocketError(path: path, reason: reason)
        }
        return fd
    }

    /// A connected client socket, or the reason there is none.
    public static func connect(to path: String) throws -> Int32 {
        var address = try address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw APISocketError(path: path, reason: String(cString: strerror(errno))) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw APISocketError(path: path, reason: reason)
        }
        return fd
    }

    /// Writes all of `bytes` to the connected socket `fd` (no SIGPIPE); the errno that stopped it,
    /// or nil once everything is sent.
    public static func sendAll(_ bytes: [UInt8], on fd: Int32) -> Int32? {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return errno }
            offset += written
        }
        return nil
    }

    /// The socket address of `path` (1 to 107 bytes).
    static func address(_ path: String) throws -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw APISocketError(path: path, reason: "a socket path must be 1 to 107 bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in bytes.enumerated() { buffer[index] = byte }
        }
        return address
    }

    /// A socket at `path` that nobody listens on is a killed hvctl's: it goes. A live one is
    /// refused, naming its process (SO_PEERCRED); anything else at `path` is left for bind to refuse.
    private static func removeIfStale(_ path: String, address: inout sockaddr_un) throws {
        var status = stat()
        guard lstat(path, &status) == 0, status.st_mode & S_IFMT == S_IFSOCK else { return }
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { throw APISocketError(path: path, reason: String(cString: strerror(errno))) }
        defer { close(probe) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if connected == 0 {
            let pid = ckvm_peer_pid(probe)
            let holder = pid > 0 ? "process \(pid)" : "another process"
            throw APISocketError(path: path, reason: "in use by \(holder), which is listening on it")
        }
        guard errno == ECONNREFUSED else { return }
        unlink(path)
    }
}
