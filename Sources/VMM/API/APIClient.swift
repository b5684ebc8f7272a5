import FoundationEssentials
import Glibc

/// A reply the API gave, or could not give.
public struct APIClientError: Error, CustomStringConvertible {
    public let description: String
}

/// One request to a running hvctl's API socket (`hvctl stats`, `pause`, ...): HTTP/1.1 with
/// `Connection: close`, the reply read to the end.
public enum APIClient {
    public struct Reply: Sendable {
        public let status: Int
        public let body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    /// Sends `method path` with `body` (JSON) and returns a 2xx reply; any other status throws
    /// with the API's message.
    public static func request(_ method: String, _ path: String, body: [UInt8] = [], socket: String) throws -> Reply {
        let fd: Int32
        do {
            fd = try APISocket.connect(to: socket)
        } catch let error as APISocketError {
            throw APIClientError(description: error.description)
        }
        defer { close(fd) }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        if !body.isEmpty { head += "Content-Type: application/json\r\n" }
        head += "Content-Length: \(body.count)\r\n\r\n"
        let bytes = Array(head.utf8) + body
        if let error = APISocket.sendAll(bytes, on: fd) {
            throw APIClientError(description: "\(socket): \(String(cString: strerror(error)))")
        }
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            reply += buffer[0..<count]
        }
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = reply.indices.first(where: { reply[$0...].starts(with: separator) }),
            let statusLine = String(decoding: reply[..<end], as: UTF8.self).split(separator: "\r\n").first,
            let status = statusLine.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
        else {
            throw APIClientError(description: "\(socket): the connection closed without an HTTP reply")
        }
        let result = Reply(status: status, body: Array(reply[(end + 4)...]))
        guard (200..<300).contains(status) else {
            let message =
                (try? JSONDecoder().decode(APIErrorBody.self, from: Data(result.body)))?.message ?? result.text
            throw APIClientError(description: "\(socket): \(message) (HTTP \(status))")
        }
        return result
    }
}
