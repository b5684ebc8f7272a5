import Hypervisor
import Glibc
import Synchronization

/// Where a VM's console bytes go when several VMs run: stdout with every line prefixed by the
/// VM's name, or a file of its own. Any of the VM's vCPU threads may write.
final class ConsoleSink: Sendable {
    private let fd: Int32
    private let prefix: [UInt8]
    private let line = Lock<[UInt8]>([])

    /// stdout, lines prefixed with "[name] ".
    init(prefixedWith name: String) {
        fd = STDOUT_FILENO
        prefix = Array("[\(name)] ".utf8)
    }

    /// A file, created or truncated.
    init(path: String) throws {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw ConsoleSinkError(description: "console \(path): \(String(cString: strerror(errno)))")
        }
        prefix = []
    }

    deinit {
        flush()
        if fd != STDOUT_FILENO { close(fd) }
    }

    func write(_ byte: UInt8) {
        if prefix.isEmpty {
            writeAll([byte])
            return
        }
        // Whole lines in one write, so two VMs' lines do not interleave mid-line.
        let complete = line.withLock { line -> [UInt8]? in
            line.append(byte)
            guard byte == UInt8(ascii: "\n") || line.count >= 4096 else { return nil }
            defer { line.removeAll(keepingCapacity: true) }
            return line
        }
        if let complete { writeAll(prefix + complete) }
    }

    /// Writes a last unterminated line.
    func flush() {
        let rest = line.withLock { line -> [UInt8] in
            defer { line = [] }
            return line
        }
        if !rest.isEmpty { writeAll(prefix + rest) }
    }

    private func writeAll(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return }
            offset += written
        }
    }
}

struct ConsoleSinkError: Error, CustomStringConvertible {
    let description: String
}
