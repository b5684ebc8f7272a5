import ArgumentParser
import FoundationEssentials
import Glibc
import VMM

/// `hvctl stats --socket PATH`: asks a running `hvctl run --api-socket PATH` for its live
/// statistics and prints the JSON document.
struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the live statistics of a running hvctl (per VM, device, queue and side core) as JSON.")

    @Option(help: "The --api-socket of the running hvctl.")
    var socket: String

    func run() throws {
        let reply = try Self.request(ControlRequest(command: "stats"), socket: socket)
        print(reply)
    }

    /// Sends one request line and returns the reply line.
    static func request(_ request: ControlRequest, socket path: String) throws -> String {
        var address: sockaddr_un
        do {
            address = try ControlSocket.address(path)
        } catch let error as ControlSocketError {
            throw ValidationError("--socket \(error)")
        }
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ValidationError("--socket \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else { throw ValidationError("--socket \(path): \(String(cString: strerror(errno)))") }
        let line = Array(try JSONEncoder().encode(request)) + [UInt8(ascii: "\n")]
        guard line.withUnsafeBytes({ Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == line.count
        else {
            throw ValidationError("--socket \(path): \(String(cString: strerror(errno)))")
        }
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while !reply.contains(UInt8(ascii: "\n")) {
            let count = read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            reply += buffer[0..<count]
        }
        guard let end = reply.firstIndex(of: UInt8(ascii: "\n")) else {
            throw ValidationError("--socket \(path): the connection closed without a reply")
        }
        let text = String(decoding: reply[..<end], as: UTF8.self)
        if text.hasPrefix("{\"error\"") { throw ValidationError("--socket \(path): \(text)") }
        return text
    }
}
