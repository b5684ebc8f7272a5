/// One HTTP/1.1 request as the API reads it.
public struct HTTPRequest: Equatable, Sendable {
    public var method: String
    /// The path without the query, e.g. `/api/v1/vm.info`.
    public var path: String
    /// The query's `name=value` pairs, in order (no percent-decoding: the API's values are plain names).
    public var query: [(name: String, value: String)]
    /// Header names in lower case.
    public var headers: [String: String]
    public var body: [UInt8]
    /// `Connection: close`, or HTTP/1.0 without `Connection: keep-alive`.
    public var closesConnection: Bool

    public func queryValue(_ name: String) -> String? { query.first { $0.name == name }?.value }

    public static func == (lhs: HTTPRequest, rhs: HTTPRequest) -> Bool {
        lhs.method == rhs.method && lhs.path == rhs.path && lhs.query.map(\.name) == rhs.query.map(\.name)
            && lhs.query.map(\.value) == rhs.query.map(\.value) && lhs.headers == rhs.headers
            && lhs.body == rhs.body && lhs.closesConnection == rhs.closesConnection
    }
}

/// A request the parser refuses: the status to answer with, then the connection closes.
public struct HTTPParseError: Error, Equatable, Sendable {
    public let status: Int
    public let message: String
}

/// A strict subset of HTTP/1.1 for a control API (as Firecracker's micro_http): a request line,
/// at most `maxHeaderCount` headers in at most `maxHeaderBytes`, and a body only by
/// Content-Length up to `maxBodyBytes`. No chunked bodies, no continuation lines, no bare LF.
/// Everything it keeps is bounded, so a client cannot make the server hold more than
/// `maxHeaderBytes + maxBodyBytes` for it.
public struct HTTPRequestParser: Sendable {
    public static let maxHeaderBytes = 8192
    public static let maxHeaderCount = 32
    public static let maxBodyBytes = 65536

    public enum Result: Equatable, Sendable {
        /// More bytes are needed.
        case incomplete
        /// A request, and how many bytes of the input it took (pipelined bytes may follow).
        case complete(HTTPRequest, consumed: Int)
        case invalid(HTTPParseError)
    }

    /// Parses the request at the start of `bytes`.
    public static func parse(_ bytes: ArraySlice<UInt8>) -> Result {
        guard let headerEnd = endOfHeaders(bytes) else {
            if bytes.count > maxHeaderBytes {
                return .invalid(.init(status: 431, message: "the request head exceeds 8192 bytes"))
            }
            // A bare LF ends no line here, and waiting for CRLF CRLF would never end: refuse it at once.
            if hasBareLineEnd(bytes, complete: false) {
                return .invalid(.init(status: 400, message: "lines must end with CRLF"))
            }
            return .incomplete
        }
        guard headerEnd - bytes.startIndex <= maxHeaderBytes else {
            return .invalid(.init(status: 431, message: "the request head exceeds 8192 bytes"))
        }
        let head = bytes[bytes.startIndex..<headerEnd]
        if hasBareLineEnd(head, complete: true) {
            return .invalid(.init(status: 400, message: "lines must end with CRLF"))
        }
        var lines = split(head)
        guard !lines.isEmpty else { return .invalid(.init(status: 400, message: "empty request line")) }
        let requestLine = lines.removeFirst()
        var request: HTTPRequest
        switch parseRequestLine(requestLine) {
        case .success(let parsed): request = parsed
        case .failure(let error): return .invalid(error)
        }
        guard lines.count <= maxHeaderCount else {
            return .invalid(.init(status: 431, message: "more than \(maxHeaderCount) headers"))
        }
        for line in lines {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex,
                line[line.startIndex..<colon].allSatisfy(isTokenByte)
            else { return .invalid(.init(status: 400, message: "malformed header line")) }
            let name = String(decoding: line[line.startIndex..<colon], as: UTF8.self).lowercased()
            let rawValue = line[(colon + 1)...]
            guard rawValue.allSatisfy({ $0 == 9 || (32..<127).contains($0) }) else {
                return .invalid(.init(status: 400, message: "header \(name): invalid characters"))
            }
            let value = String(decoding: rawValue, as: UTF8.self).trimmingSpaces
            guard request.headers[name] == nil else {
                return .invalid(.init(status: 400, message: "header \(name) given twice"))
            }
            request.headers[name] = value
        }
        if request.headers["transfer-encoding"] != nil {
            return .invalid(.init(status: 501, message: "Transfer-Encoding is not supported; send Content-Length"))
        }
        if let connection = request.headers["connection"]?.lowercased() {
            if connection == "close" { request.closesConnection = true }
            if connection == "keep-alive" { request.closesConnection = false }
        }
        var length = 0
        if let value = request.headers["content-length"] {
            guard !value.isEmpty, value.utf8.allSatisfy({ (48...57).contains($0) }) else {
                return .invalid(.init(status: 400, message: "Content-Length must be a decimal number"))
            }
            // More than 9 digits is too large whatever they are, and Int cannot overflow below that.
            guard value.utf8.count <= 9, let parsed = Int(value), parsed <= maxBodyBytes else {
                return .invalid(.init(status: 413, message: "the body exceeds \(maxBodyBytes) bytes"))
            }
            length = parsed
        }
        let bodyStart = headerEnd + 4
        guard bytes.endIndex - bodyStart >= length else { return .incomplete }
        request.body = Array(bytes[bodyStart..<(bodyStart + length)])
        return .complete(request, consumed: bodyStart + length - bytes.startIndex)
    }

    /// The index of the CRLF CRLF that ends the head, looking at no more than the head's limit.
    private static func endOfHeaders(_ bytes: ArraySlice<UInt8>) -> Int? {
        let limit = min(bytes.endIndex, bytes.startIndex + maxHeaderBytes + 4)
        var index = bytes.startIndex
        while index + 3 < limit {
            if bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 {
                return index
            }
            index += 1
        }
        return nil
    }

    /// Whether a LF comes without its CR or a CR without its LF. `complete`: `bytes` is the whole
    /// head, so a CR at its end is bare too (otherwise the next read may bring the LF).
    private static func hasBareLineEnd(_ bytes: ArraySlice<UInt8>, complete: Bool) -> Bool {
        let limit = min(bytes.endIndex, bytes.startIndex + maxHeaderBytes + 4)
        var index = bytes.startIndex
        while index < limit {
            if bytes[index] == 10 && (index == bytes.startIndex || bytes[index - 1] != 13) { return true }
            if bytes[index] == 13 {
                if index + 1 < bytes.endIndex {
                    if bytes[index + 1] != 10 { return true }
                } else if complete {
                    return true
                }
            }
            index += 1
        }
        return false
    }

    private static func split(_ head: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
        var lines: [ArraySlice<UInt8>] = []
        var start = head.startIndex
        var index = head.startIndex
        while index < head.endIndex {
            if head[index] == 13 {
                lines.append(head[start..<index])
                index += 2
                start = index
            } else {
                index += 1
            }
        }
        lines.append(head[start..<head.endIndex])
        return lines
    }

    private static func parseRequestLine(_ line: ArraySlice<UInt8>) -> Swift.Result<HTTPRequest, HTTPParseError> {
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy({ (65...90).contains($0) }) else {
            return .failure(.init(status: 400, message: "malformed request line"))
        }
        let version = String(decoding: parts[2], as: UTF8.self)
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else {
            return .failure(.init(status: 505, message: "only HTTP/1.1 and HTTP/1.0 are served"))
        }
        let target = parts[1]
        guard target.first == UInt8(ascii: "/"), target.allSatisfy({ (33..<127).contains($0) }) else {
            return .failure(.init(status: 400, message: "the request target must be an absolute path"))
        }
        let question = target.firstIndex(of: UInt8(ascii: "?"))
        let path = String(decoding: target[target.startIndex..<(question ?? target.endIndex)], as: UTF8.self)
        var query: [(name: String, value: String)] = []
        if let question {
            for pair in target[(question + 1)...].split(separator: UInt8(ascii: "&")) {
                let equals = pair.firstIndex(of: UInt8(ascii: "="))
                let name = String(decoding: pair[pair.startIndex..<(equals ?? pair.endIndex)], as: UTF8.self)
                let value = equals.map { String(decoding: pair[($0 + 1)...], as: UTF8.self) } ?? ""
                query.append((name, value))
            }
        }
        return .success(
            HTTPRequest(
                method: String(decoding: parts[0], as: UTF8.self), path: path, query: query, headers: [:], body: [],
                closesConnection: version == "HTTP/1.0"))
    }

    /// RFC 9110's token characters, which header names are made of.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }
}

extension String {
    fileprivate var trimmingSpaces: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { $0 != " " && $0 != "\t" }) else { return "" }
        let last = scalars.lastIndex(where: { $0 != " " && $0 != "\t" })!
        return String(scalars[first...last])
    }
}
