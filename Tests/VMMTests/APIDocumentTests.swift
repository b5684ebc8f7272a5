import Foundation
import XCTest

@testable import VMM

/// docs/api.yaml is the API's contract: it lists exactly the endpoints the server routes.
/// (openapi-spec-validator and schemathesis check the document and the live server in
/// IntegrationTests/APITests.)
final class APIDocumentTests: XCTestCase {
    func testTheDocumentListsEveryEndpointAndNoOther() throws {
        let document = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/api.yaml")
        let text = try String(contentsOf: document, encoding: .utf8)
        var endpoints: [String] = []
        var path: String?
        var inPaths = false
        for line in text.components(separatedBy: "\n") {
            if line == "paths:" { inPaths = true; continue }
            if inPaths && !line.isEmpty && !line.hasPrefix(" ") { inPaths = false }
            guard inPaths else { continue }
            if line.hasPrefix("  /") && line.hasSuffix(":") && !line.hasPrefix("   ") {
                path = String(line.dropFirst(2).dropLast())
            } else if let path, line.hasPrefix("    "), !line.hasPrefix("     "), line.hasSuffix(":") {
                let method = line.trimmingCharacters(in: .whitespaces).dropLast().uppercased()
                if ["GET", "PUT", "POST", "PATCH", "DELETE"].contains(method) { endpoints.append("\(method) \(path)") }
            }
        }
        XCTAssertEqual(endpoints.sorted(), VMMAPI.endpoints.sorted())
    }
}
