import VMM

/// The API's HTTP/1.1 request parser on any bytes a client may send. Invariants: a complete
/// request takes at least one byte and no more than given, its body and headers are within the
/// parser's bounds, and the same bytes arriving in two reads parse to the same request.
enum HTTPRequestTarget {
    static func run(_ data: UnsafeRawBufferPointer) {
        let bytes = Array(data)
        let whole = HTTPRequestParser.parse(bytes[...])
        guard case .complete(let request, let consumed) = whole else {
            if case .invalid(let error) = whole {
                invariant((400..<600).contains(error.status), "an error status outside 4xx/5xx: \(error.status)")
            }
            return
        }
        invariant(consumed > 0 && consumed <= bytes.count, "consumed \(consumed) of \(bytes.count) bytes")
        invariant(request.body.count <= HTTPRequestParser.maxBodyBytes, "a body beyond the limit")
        invariant(request.headers.count <= HTTPRequestParser.maxHeaderCount, "more headers than the limit")
        // The request's own bytes alone, and every shorter prefix, must not parse differently.
        invariant(HTTPRequestParser.parse(bytes[..<consumed]) == whole, "the request alone parsed differently")
        let split = consumed / 2
        if case .complete = HTTPRequestParser.parse(bytes[..<split]) {
            invariant(false, "half a request parsed as complete")
        }
    }
}
