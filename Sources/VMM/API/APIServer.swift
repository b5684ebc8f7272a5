import CKVM
import Glibc
import Hypervisor

/// The HTTP/1.1 API on a Unix socket: one thread named `api` serves every client with poll(2),
/// so several clients are served at once and none can hold the others up. Each client is
/// bounded: one request of at most `HTTPRequestParser`'s sizes at a time, `requestTimeout` to
/// send it once it started, `idleTimeout` between requests; at most `maxClients` at once.
/// Requests are answered on the `api` thread by `respond`, which must not block for long.
public final class APIServer: Sendable {
    public static let maxClients = 16
    public static let requestTimeout: UInt64 = 5_000_000_000
    public static let idleTimeout: UInt64 = 60_000_000_000
    /// How long a client must have been idle before a new one at the limit may replace it.
    public static let minimumIdleToReplace: UInt64 = 1_000_000_000

    private let path: String
    private let listener: Int32
    private let wake: EventFD
    private let thread = WorkerThread()
    private let respond: @Sendable (HTTPRequest) -> HTTPResponse

    /// Listens on `path` (a stale socket there is replaced, a live one refused).
    public init(path: String, respond: @escaping @Sendable (HTTPRequest) -> HTTPResponse) throws {
        self.path = path
        self.respond = respond
        listener = try APISocket.listen(at: path)
        do {
            wake = try EventFD(nonBlocking: true)
            try thread.start(name: "api") { [self] in serve() }
        } catch {
            close(listener)
            unlink(path)
            throw error
        }
    }

    /// Stops serving (clients are disconnected) and removes the socket file.
    public func stop() {
        wake.signal()
        thread.join()
        close(listener)
        unlink(path)
    }

    private final class Client {
        let fd: Int32
        var input: [UInt8] = []
        var output: [UInt8] = []
        var closeAfterOutput = false
        /// When the client is dropped if it has not completed its request (or sent a new one).
        var deadline: UInt64

        init(fd: Int32, now: UInt64) {
            self.fd = fd
            deadline = now + APIServer.idleTimeout
        }
    }

    private func serve() {
        var clients: [Client] = []
        defer { for client in clients { close(client.fd) } }
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            var fds = [
                pollfd(fd: wake.fd, events: Int16(POLLIN), revents: 0),
                pollfd(fd: listener, events: Int16(POLLIN), revents: 0),
            ]
            for client in clients {
                fds.append(pollfd(fd: client.fd, events: Int16(client.output.isEmpty ? POLLIN : POLLOUT), revents: 0))
            }
            let now = MonotonicClock.now()
            let nearest = clients.map(\.deadline).min().map { $0 > now ? $0 - now : 0 } ?? 1_000_000_000
            let timeout = Int32(min(nearest / 1_000_000 + 1, 1000))
            let ready = poll(&fds, nfds_t(fds.count), timeout)
            if ready < 0 && errno != EINTR { return }
            if fds[0].revents != 0 { return }
            let after = MonotonicClock.now()
            var keep: [Client] = []
            for (index, client) in clients.enumerated() {
                let events = fds[index + 2].revents
                if serviced(client, events: events, now: after, buffer: &buffer) {
                    keep.append(client)
                } else {
                    close(client.fd)
                }
            }
            clients = keep
            if fds[1].revents & Int16(POLLIN) != 0 { accept(into: &clients, now: after) }
        }
    }

    /// Takes waiting connections (at most 64 a round, so a flood of them cannot keep the thread
    /// from its clients). At `maxClients`, a new connection replaces the client idle the longest
    /// between requests, if one has been idle `minimumIdleToReplace` (so idle connections cannot
    /// lock others out, and a burst of clients does not close its own members before they speak);
    /// otherwise it gets 503 and is closed.
    private func accept(into clients: inout [Client], now: UInt64) {
        let earlier = clients.count
        for _ in 0..<64 {
            let fd = ckvm_accept_nonblocking(listener)
            guard fd >= 0 else { return }
            if clients.count >= Self.maxClients, let idle = Self.longestIdle(clients.prefix(earlier), now: now) {
                close(clients[idle].fd)
                clients.remove(at: idle)
            }
            guard clients.count < Self.maxClients else {
                let reply = HTTPResponse.error(503, code: "too_many_clients", "more than \(Self.maxClients) clients")
                    .serialized(close: true)
                _ = reply.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(fd)
                continue
            }
            clients.append(Client(fd: fd, now: now))
        }
    }

    /// The client idle the longest, if it has been idle `minimumIdleToReplace` between requests:
    /// nothing read, nothing to write, and nothing waiting in its socket either.
    private static func longestIdle(_ clients: ArraySlice<Client>, now: UInt64) -> Int? {
        // An idle client's deadline is `idleTimeout` after its last activity.
        let latest = now &+ idleTimeout &- minimumIdleToReplace
        guard
            let index = clients.indices.filter({
                clients[$0].input.isEmpty && clients[$0].output.isEmpty && clients[$0].deadline <= latest
            }).min(by: { clients[$0].deadline < clients[$1].deadline })
        else { return nil }
        var byte: UInt8 = 0
        let waiting = recv(clients[index].fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        return waiting < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? index : nil
    }

    /// Reads, answers and writes for one client; false when it is done with.
    private func serviced(_ client: Client, events: Int16, now: UInt64, buffer: inout [UInt8]) -> Bool {
        if events & Int16(POLLERR | POLLNVAL) != 0 { return false }
        if !client.output.isEmpty {
            guard events & Int16(POLLOUT) != 0 else { return now < client.deadline }
            let written = client.output.withUnsafeBytes {
                send(client.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if written < 0 { return errno == EAGAIN || errno == EINTR }
            client.output.removeFirst(written)
            guard client.output.isEmpty else { return true }
            if client.closeAfterOutput { return false }
            client.deadline = now + (client.input.isEmpty ? Self.idleTimeout : Self.requestTimeout)
            // Pipelined requests already read are answered now, not after the next read.
            return answer(client, now: now)
        }
        if events & Int16(POLLIN | POLLHUP) != 0 {
            let count = read(client.fd, &buffer, buffer.count)
            if count < 0 { return errno == EAGAIN || errno == EINTR }
            if count == 0 { return false }
            if client.input.isEmpty { client.deadline = now + Self.requestTimeout }
            client.input += buffer[0..<count]
            return answer(client, now: now)
        }
        if now >= client.deadline {
            // Half a request after the time allowed: say so (best effort) and drop it.
            if !client.input.isEmpty {
                let reply = HTTPResponse.error(408, code: "request_timeout", "the request did not arrive in time")
                    .serialized(close: true)
                _ = reply.withUnsafeBytes { send(client.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            }
            return false
        }
        return true
    }

    /// Answers the request at the start of the client's input, if it is complete.
    private func answer(_ client: Client, now: UInt64) -> Bool {
        switch HTTPRequestParser.parse(client.input[...]) {
        case .incomplete:
            return true
        case .invalid(let error):
            let code = error.status == 413 || error.status == 431 ? "request_too_large" : "bad_request"
            client.output = HTTPResponse.error(error.status, code: code, error.message).serialized(close: true)
            client.closeAfterOutput = true
            client.input = []
        case .complete(let request, let consumed):
            client.input.removeFirst(consumed)
            client.output = respond(request).serialized(close: request.closesConnection)
            client.closeAfterOutput = request.closesConnection
        }
        client.deadline = now + Self.requestTimeout
        return true
    }
}
