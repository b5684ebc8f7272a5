import XCTest

@testable import VMM

final class HTTPRequestParserTests: XCTestCase {
    struct NotComplete: Error {
        let result: HTTPRequestParser.Result
    }

    func parse(_ text: String) -> HTTPRequestParser.Result { HTTPRequestParser.parse(Array(text.utf8)[...]) }

    func request(_ text: String) throws -> (HTTPRequest, Int) {
        guard case .complete(let request, let consumed) = parse(text) else {
            throw NotComplete(result: parse(text))
        }
        return (request, consumed)
    }

    func status(_ text: String) -> Int? {
        if case .invalid(let error) = parse(text) { return error.status }
        return nil
    }

    func testARequestWithQueryHeadersAndBody() throws {
        let text = "PUT /api/v1/vm.pause?vm=a&x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nX-A:  b \r\n\r\n{}"
        let (request, consumed) = try request(text + "GET")
        XCTAssertEqual(consumed, text.utf8.count, "the pipelined bytes after it are left")
        XCTAssertEqual(request.method, "PUT")
        XCTAssertEqual(request.path, "/api/v1/vm.pause")
        XCTAssertEqual(request.queryValue("vm"), "a")
        XCTAssertEqual(request.queryValue("x"), "1")
        XCTAssertEqual(request.headers["x-a"], "b", "names in lower case, value trimmed")
        XCTAssertEqual(request.body, Array("{}".utf8))
        XCTAssertFalse(request.closesConnection)
    }

    func testConnectionHandling() throws {
        XCTAssertTrue(try request("GET / HTTP/1.0\r\n\r\n").0.closesConnection)
        XCTAssertFalse(try request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").0.closesConnection)
        XCTAssertTrue(try request("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").0.closesConnection)
    }

    func testPartialRequestsWaitForMore() {
        XCTAssertEqual(parse("GET / HTTP/1.1\r\nHost: x\r\n"), .incomplete)
        XCTAssertEqual(parse("GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"), .incomplete)
        XCTAssertEqual(parse("GET / HTTP/1.1\r"), .incomplete)
    }

    func testMalformedRequestsAreRefusedWithTheirStatus() {
        XCTAssertEqual(status("GET / HTTP/1.1\n\n"), 400, "bare LF")
        XCTAssertEqual(status("GET / HTTP/1.1\r\r\n\r\n"), 400, "bare CR at the end of the head")
        XCTAssertEqual(status("GET /  HTTP/1.1\r\n\r\n"), 400, "two spaces")
        XCTAssertEqual(status("get / HTTP/1.1\r\n\r\n"), 400, "lower-case method")
        XCTAssertEqual(status("GET x HTTP/1.1\r\n\r\n"), 400, "not an absolute path")
        XCTAssertEqual(status("GET / HTTP/2.0\r\n\r\n"), 505)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nNoColon\r\n\r\n"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\n Folded: x\r\n\r\n"), 400, "no continuation lines")
        XCTAssertEqual(status("GET / HTTP/1.1\r\nA: 1\r\nA: 2\r\n\r\n"), 400, "a header twice")
        XCTAssertEqual(status("GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n"), 413)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"), 413)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), 501)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nA: \u{7f}\r\n\r\n"), 400, "a control character in a value")
    }

    func testHeadAndHeaderCountAreBounded() {
        let long = "GET / HTTP/1.1\r\nA: " + String(repeating: "x", count: 9000)
        XCTAssertEqual(status(long), 431, "a head past 8 KiB is refused before its end arrives")
        let many = "GET / HTTP/1.1\r\n" + (0..<33).map { "H\($0): v\r\n" }.joined() + "\r\n"
        XCTAssertEqual(status(many), 431)
        let enough = "GET / HTTP/1.1\r\n" + (0..<32).map { "H\($0): v\r\n" }.joined() + "\r\n"
        XCTAssertNil(status(enough))
    }
}
