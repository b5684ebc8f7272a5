import Foundation
import Glibc
import Hypervisor
import TestSupport
import XCTest

@testable import VMM

/// The API server over its socket with a stand-in for the endpoints: permissions, stale and
/// live sockets, several clients, slow and hostile clients, keep-alive and pipelining.
final class APIServerTests: XCTestCase {
    var directory: URL!
    var path: String { directory.appendingPathComponent("api.sock").path }

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("api-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// Answers every request with its method and path.
    func echoServer() throws -> APIServer {
        try APIServer(path: path) { request in
            HTTPResponse(status: 200, contentType: "text/plain", body: Array("\(request.method) \(request.path)".utf8))
        }
    }

    /// A raw client connection.
    func connect() throws -> Int32 { try APISocket.connect(to: path) }

    func send(_ fd: Int32, _ text: String) {
        let bytes = Array(text.utf8)
        XCTAssertEqual(Glibc.send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)), bytes.count)
    }

    /// Reads until `count` complete responses or the connection's end (10 s at most).
    func receive(_ fd: Int32, responses count: Int = 1) -> String {
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var text = ""
        var buffer = [UInt8](repeating: 0, count: 65536)
        while text.components(separatedBy: "HTTP/1.1 ").count - 1 < count || !text.hasSuffix(lastBodyEnd(text)) {
            let read = Glibc.read(fd, &buffer, buffer.count)
            guard read > 0 else { break }
            text += String(decoding: buffer[0..<read], as: UTF8.self)
        }
        return text
    }

    /// Good enough for the echo server's bodies: a response is complete when its body follows its head.
    private func lastBodyEnd(_ text: String) -> String {
        guard let head = text.range(of: "\r\n\r\n", options: .backwards) else { return "\u{0}" }
        let before = text[..<head.lowerBound]
        guard let length = before.components(separatedBy: "Content-Length: ").last?.prefix(while: \.isNumber),
            let count = Int(length)
        else { return "" }
        return String(text[head.upperBound...].suffix(count))
    }

    func testTheSocketIsOwnerOnlyAndRemovedAtStop() throws {
        let server = try echoServer()
        var status = stat()
        XCTAssertEqual(lstat(path, &status), 0)
        XCTAssertEqual(status.st_mode & 0o777, 0o600)
        server.stop()
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
    }

    func testAStaleSocketIsReplacedAndALiveOneRefusedNamingItsProcess() throws {
        // A socket nobody listens on, as a killed hvctl leaves it.
        let stale = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = try APISocket.address(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(stale, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        XCTAssertEqual(bound, 0)
        close(stale)
        let server = try echoServer()
        defer { server.stop() }
        XCTAssertThrowsError(try echoServer()) { error in
            XCTAssertEqual(
                (error as? APISocketError)?.reason, "in use by process \(getpid()), which is listening on it")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: path), "the live socket is left alone")
    }

    func testAPathThatIsNotASocketIsRefusedAndKept() throws {
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data("keep".utf8)))
        XCTAssertThrowsError(try echoServer()) { error in
            XCTAssertEqual((error as? APISocketError)?.reason, "exists and is not a socket")
        }
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "keep")
    }

    func testKeepAliveAndPipelinedRequestsAreAnsweredInOrder() throws {
        let server = try echoServer()
        defer { server.stop() }
        let fd = try connect()
        defer { close(fd) }
        send(fd, "GET /a HTTP/1.1\r\n\r\nPUT /b HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        let replies = receive(fd, responses: 2)
        XCTAssertTrue(replies.contains("GET /a"), replies)
        XCTAssertTrue(replies.contains("PUT /b"), replies)
        XCTAssertLessThan(
            try XCTUnwrap(replies.range(of: "GET /a")).lowerBound, try XCTUnwrap(replies.range(of: "PUT /b")).lowerBound
        )
        send(fd, "GET /c HTTP/1.1\r\nConnection: close\r\n\r\n")
        let last = receive(fd)
        XCTAssertTrue(last.contains("Connection: close"), last)
        XCTAssertTrue(last.hasSuffix("GET /c"), last)
    }

    func testASlowClientDoesNotHoldUpOthers() throws {
        let server = try echoServer()
        defer { server.stop() }
        // Half a request, then nothing: the server must go on serving others meanwhile.
        let slow = try connect()
        defer { close(slow) }
        send(slow, "GET /slow HTTP/1.1\r\nHost:")
        let idle = try connect()
        defer { close(idle) }
        for index in 0..<5 {
            let fd = try connect()
            send(fd, "GET /\(index) HTTP/1.1\r\nConnection: close\r\n\r\n")
            XCTAssertTrue(receive(fd).hasSuffix("GET /\(index)"))
            close(fd)
        }
        // The slow one is told 408 and dropped once its time is up.
        let reply = receive(slow)
        XCTAssertTrue(reply.hasPrefix("HTTP/1.1 408 "), reply)
    }

    func testMalformedAndOversizedRequestsGetAnErrorAndTheConnectionCloses() throws {
        let server = try echoServer()
        defer { server.stop() }
        let cases = [
            ("GET / HTTP/1.1\nHost: x\n\n", "400", "bad_request"),
            ("GET / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", "413", "request_too_large"),
            ("GET / HTTP/1.1\r\nX: " + String(repeating: "y", count: 10000), "431", "request_too_large"),
            ("GET / SPDY/3\r\n\r\n", "505", "bad_request"),
        ]
        for (request, status, code) in cases {
            let fd = try connect()
            send(fd, request)
            let reply = receive(fd)
            XCTAssertTrue(
                reply.hasPrefix("HTTP/1.1 \(status) "),
                "\(request.prefix(40).debugDescription): \(reply.debugDescription)")
            XCTAssertTrue(reply.contains("\"code\":\"\(code)\""), reply)
            XCTAssertTrue(reply.contains("Connection: close"), reply)
            var byte: UInt8 = 0
            XCTAssertEqual(read(fd, &byte, 1), 0, "closed after the error")
            close(fd)
        }
    }

    /// At the limit, a new connection takes the place of the client idle the longest (for at least
    /// a second); when every client is in the middle of a request (each bounded by the request
    /// timeout) or only just idle, it is turned away. Idle connections cannot lock the others out.
    func testClientsBeyondTheLimitReplaceIdleOnesOrAreTurnedAway() throws {
        let server = try echoServer()
        defer { server.stop() }
        var open: [Int32] = []
        defer { open.forEach { close($0) } }
        for _ in 0..<APIServer.maxClients { open.append(try connect()) }
        // Each accepted: a request on the last one is answered, so the server has taken all of them.
        send(open.last!, "GET /last HTTP/1.1\r\n\r\n")
        XCTAssertTrue(receive(open.last!).hasSuffix("GET /last"))
        // Every client half-way through a request (sent before the next connection, so the server
        // reads it first): no room.
        for fd in open { send(fd, "GET /held HTTP/1.1\r\n") }
        let refused = try connect()
        XCTAssertTrue(receive(refused).hasPrefix("HTTP/1.1 503 "))
        close(refused)

        // The first finishes its request and is idle again; once it has been idle long enough (the
        // server's minimum, which keeps a burst of clients from replacing its own members), it is
        // the one a new client replaces. The wait is the behaviour under test, not a sync.
        send(open[0], "\r\n")
        XCTAssertTrue(receive(open[0]).hasSuffix("GET /held"))
        let early = try connect()
        XCTAssertTrue(receive(early).hasPrefix("HTTP/1.1 503 "), "idle for less than the minimum: kept")
        close(early)
        usleep(UInt32(APIServer.minimumIdleToReplace / 1000) + 200_000)
        let newcomer = try connect()
        defer { close(newcomer) }
        send(newcomer, "GET /new HTTP/1.1\r\n\r\n")
        XCTAssertTrue(receive(newcomer).hasSuffix("GET /new"))
        var byte: UInt8 = 0
        XCTAssertEqual(read(open[0], &byte, 1), 0, "the idle client was closed to make room")
        send(open[1], "\r\n")
        XCTAssertTrue(receive(open[1]).hasSuffix("GET /held"), "the others are still served")
    }

    func testConcurrentClientsAreAllAnswered() throws {
        let server = try echoServer()
        defer { server.stop() }
        let answered = Counter()
        let path = self.path
        DispatchQueue.concurrentPerform(iterations: 8) { index in
            for round in 0..<25 {
                guard let fd = try? APISocket.connect(to: path) else { continue }
                let bytes = Array("GET /\(index)/\(round) HTTP/1.1\r\nConnection: close\r\n\r\n".utf8)
                _ = Glibc.send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL))
                var reply: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 4096)
                while case let count = read(fd, &buffer, buffer.count), count > 0 { reply += buffer[0..<count] }
                close(fd)
                if String(decoding: reply, as: UTF8.self).hasSuffix("GET /\(index)/\(round)") { answered.add() }
            }
        }
        XCTAssertEqual(answered.count, 200)
    }
}
