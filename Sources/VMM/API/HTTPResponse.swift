import FoundationEssentials

/// An API response: a status and a body, JSON unless said otherwise.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]
    /// For 405: the methods the path takes.
    public var allow: [String]?

    public init(status: Int, contentType: String = "application/json", body: [UInt8]) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    /// A JSON document (keys sorted, so replies compare byte for byte).
    public static func json(_ value: some Encodable, status: Int = 200) -> HTTPResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            return HTTPResponse(status: status, body: Array(try encoder.encode(value)))
        } catch {
            return .error(500, code: "internal_error", "cannot encode the reply: \(error)")
        }
    }

    /// An error: `{"code":"...","message":"..."}`. `code` is stable for programs to match on;
    /// `message` names the bad input for people.
    public static func error(_ status: Int, code: String, _ message: String) -> HTTPResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let body = (try? encoder.encode(APIErrorBody(code: code, message: message))) ?? Data("{}".utf8)
        return HTTPResponse(status: status, body: Array(body))
    }

    public static let noContent = HTTPResponse(status: 204, body: [])

    /// The bytes on the wire. `close`: the server closes the connection after it.
    public func serialized(close: Bool) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(Self.reason(status))\r\n"
        head += "Server: hvctl\r\n"
        if status != 204 {
            head += "Content-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n"
        }
        if let allow { head += "Allow: \(allow.joined(separator: ", "))\r\n" }
        if close { head += "Connection: close\r\n" }
        head += "\r\n"
        return Array(head.utf8) + body
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 202: "Accepted"
        case 204: "No Content"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 413: "Content Too Large"
        case 415: "Unsupported Media Type"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 503: "Service Unavailable"
        case 505: "HTTP Version Not Supported"
        default: "Status"
        }
    }
}

/// The body of every error reply.
public struct APIErrorBody: Codable, Equatable, Sendable {
    public let code: String
    public let message: String
}
