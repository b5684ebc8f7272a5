import XCTest

@testable import VMM

/// The API's request bodies: what is taken, and each refusal naming its field.
final class APIRequestBodyTests: XCTestCase {
    func shutdown(_ body: String) throws -> Int? {
        try APIRequestBody.decode(ShutdownRequest.self, from: Array(body.utf8)).gracefulTimeoutSeconds
    }

    func refusal<T: Decodable>(_ type: T.Type, _ body: String) -> String {
        do {
            _ = try APIRequestBody.decode(T.self, from: Array(body.utf8))
            return "accepted"
        } catch {
            return "\(error)"
        }
    }

    func testShutdownIsHardUnlessGracefulIsTrue() throws {
        XCTAssertNil(try shutdown(""))
        XCTAssertNil(try shutdown("{}"))
        XCTAssertNil(try shutdown("{\"graceful\": false}"))
        XCTAssertEqual(try shutdown("{\"graceful\": true}"), ShutdownRequest.defaultTimeoutSeconds)
        XCTAssertEqual(try shutdown("{\"graceful\": true, \"timeoutSeconds\": 1}"), 1)
        XCTAssertEqual(try shutdown("{\"timeoutSeconds\": 3600, \"graceful\": true}"), 3600)
    }

    func testShutdownRefusalsNameTheField() {
        for (body, message) in [
            ("{\"timeoutSeconds\": 5}", "timeoutSeconds: only with \"graceful\": true"),
            ("{\"graceful\": false, \"timeoutSeconds\": 5}", "timeoutSeconds: only with \"graceful\": true"),
            ("{\"graceful\": true, \"timeoutSeconds\": 0}", "timeoutSeconds: 0 is not a whole number from 1 to 3600"),
            (
                "{\"graceful\": true, \"timeoutSeconds\": 3601}",
                "timeoutSeconds: 3601 is not a whole number from 1 to 3600"
            ),
            (
                "{\"graceful\": true, \"timeoutSeconds\": 2.5}",
                "timeoutSeconds: 2.5 is not a whole number from 1 to 3600"
            ),
            ("{\"graceful\": \"yes\"}", "graceful: wrong type or null"),
            ("{\"graceful\": null}", "graceful: wrong type or null"),
            ("{\"graceful\": true, \"timeout\": 5}", "timeout: unknown key (known: graceful, timeoutSeconds)"),
            ("[true]", "body: wrong type or null"),
            ("{\"graceful\": tru", "body: not JSON of the documented shape"),
            (
                "{\"graceful\": true, \"timeoutSeconds\": 1e300}",
                "timeoutSeconds: 1e+300 is not a whole number from 1 to 3600"
            ),
        ] {
            XCTAssertEqual(refusal(ShutdownRequest.self, body), message, body)
        }
    }

    func testSideCoreRequestsTakeExactlyOneOfCountAndAuto() {
        XCTAssertEqual(refusal(SideCoreRequest.self, "{\"count\": 2}"), "accepted")
        XCTAssertEqual(refusal(SideCoreRequest.self, "{\"auto\": true}"), "accepted")
        for (body, message) in [
            ("{}", "body: give exactly one of count and auto"),
            ("", "body: give exactly one of count and auto"),
            ("{\"count\": 1, \"auto\": true}", "body: give exactly one of count and auto"),
            ("{\"auto\": false}", "auto: only true is taken (give count for a fixed number)"),
            ("{\"count\": \"two\"}", "count: wrong type or null"),
            ("{\"cores\": 2}", "cores: unknown key (known: auto, count)"),
        ] {
            XCTAssertEqual(refusal(SideCoreRequest.self, body), message, body)
        }
    }
}
