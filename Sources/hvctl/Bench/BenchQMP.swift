import FoundationEssentials
import Glibc
import VMM

/// QEMU's machine protocol (QMP) on its Unix socket, for KVM's own statistics of QEMU's vCPUs
/// (`query-stats`, QEMU 7.1 and later): the peer's exits per request come from the counters
/// hvctl's do. Every read waits at most `replySeconds`, so a stuck QEMU cannot stall the bench.
final class BenchQMP {
    static let replySeconds = 2

    private let fd: Int32
    private let socket: String
    /// Bytes read past the last whole line.
    private var pending: [UInt8] = []

    /// Connects and leaves the greeting's capabilities negotiation (`qmp_capabilities`) done.
    init(socket: String) throws {
        do {
            fd = try APISocket.connect(to: socket)
        } catch {
            throw BenchError("QEMU's QMP socket: \(error)")
        }
        self.socket = socket
        var timeout = timeval(tv_sec: Self.replySeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        _ = try readLine()  // {"QMP": {...}}
        _ = try execute(#"{"execute":"qmp_capabilities"}"#)
    }

    deinit { close(fd) }

    /// KVM's statistics of QEMU's vCPUs at one moment.
    struct Sample {
        /// `exits` summed over the vCPUs.
        var exits: UInt64
        /// `halt_wakeup` of each vCPU, in QEMU's order (vCPU 0 first).
        var haltWakeups: [UInt64]
    }

    func sample() throws -> Sample {
        struct Reply: Decodable {
            struct Provider: Decodable {
                struct Stat: Decodable {
                    var name: String
                    var value: UInt64
                }
                var stats: [Stat]
            }
            var `return`: [Provider]
        }
        let command =
            #"{"execute":"query-stats","arguments":{"target":"vcpu","#
            + #""providers":[{"provider":"kvm","names":["exits","halt_wakeup"]}]}}"#
        let reply = try execute(command)
        guard let decoded = try? JSONDecoder().decode(Reply.self, from: Data(reply.utf8)) else {
            throw BenchError("QEMU's query-stats reply is not KVM's statistics: \(reply.prefix(200))")
        }
        // One provider entry per vCPU.
        let exits = decoded.return.compactMap { $0.stats.first { $0.name == "exits" }?.value }
        guard !exits.isEmpty else { throw BenchError("QEMU's query-stats reply has no exits: \(reply.prefix(200))") }
        return Sample(
            exits: exits.reduce(0, &+),
            haltWakeups: decoded.return.map { $0.stats.first { $0.name == "halt_wakeup" }?.value ?? 0 })
    }

    /// The host thread IDs of QEMU's vCPUs (`query-cpus-fast`) and I/O threads (`query-iothreads`).
    func threadIDs() throws -> (vcpus: [Int32], iothreads: [Int32]) {
        struct Reply: Decodable {
            struct Thread: Decodable {
                var threadID: Int32
                enum CodingKeys: String, CodingKey { case threadID = "thread-id" }
            }
            var `return`: [Thread]
        }
        func ids(_ command: String) throws -> [Int32] {
            let reply = try execute(#"{"execute":"\#(command)"}"#)
            guard let decoded = try? JSONDecoder().decode(Reply.self, from: Data(reply.utf8)) else {
                throw BenchError("QEMU's \(command) reply has no thread IDs: \(reply.prefix(200))")
            }
            return decoded.return.map(\.threadID)
        }
        return (try ids("query-cpus-fast"), try ids("query-iothreads"))
    }

    /// Sends one command and returns its reply line (`{"return": ...}`); events in between are
    /// skipped, an `{"error": ...}` reply throws.
    private func execute(_ command: String) throws -> String {
        let bytes = Array((command + "\n").utf8)
        if let error = APISocket.sendAll(bytes, on: fd) {
            throw BenchError("QEMU's QMP socket: \(String(cString: strerror(error)))")
        }
        while true {
            let line = try readLine()
            if line.hasPrefix(#"{"return""#) { return line }
            if line.hasPrefix(#"{"error""#) { throw BenchError("QEMU refused \(command): \(line.prefix(200))") }
        }
    }

    private func readLine() throws -> String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            if let end = pending.firstIndex(of: UInt8(ascii: "\n")) {
                defer { pending.removeSubrange(...end) }
                return String(decoding: pending[..<end].filter { $0 != UInt8(ascii: "\r") }, as: UTF8.self)
            }
            let count = read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                let reason = count == 0 ? "QEMU closed it" : String(cString: strerror(errno))
                throw BenchError("QEMU's QMP socket \(socket): \(reason)")
            }
            guard pending.count < 1 << 20 else { throw BenchError("QEMU's QMP socket \(socket): a line over 1 MiB") }
            pending += buffer[0..<count]
        }
    }
}
