import FoundationEssentials

/// The JSON bodies the API takes, decoded strictly: no unknown key, no null, each refusal naming
/// the field (docs/api.yaml has their schemas).
enum APIRequestBody {
    /// A refusal; `message` names the field.
    struct Invalid: Error, CustomStringConvertible {
        let description: String
    }

    /// Any key, so unknown ones can be named.
    struct Key: CodingKey {
        let stringValue: String
        init(_ name: String) { stringValue = name }
        init(stringValue: String) { self.stringValue = stringValue }
        var intValue: Int? { nil }
        init?(intValue: Int) { nil }
    }

    /// `body` decoded as `T`; an empty body decodes as `{}`.
    static func decode<T: Decodable>(_ type: T.Type, from body: [UInt8]) throws(Invalid) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(body.isEmpty ? Array("{}".utf8) : body))
        } catch let invalid as Invalid {
            throw invalid
        } catch DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context) {
            throw Invalid(description: "\(field(context) ?? "body"): wrong type or null")
        } catch DecodingError.dataCorrupted(let context) where field(context) != nil {
            throw Invalid(description: "\(field(context)!): not a valid value")
        } catch {
            throw Invalid(description: "body: not JSON of the documented shape")
        }
    }

    /// The path of the field a decoding error is about; nil for the body itself.
    private static func field(_ context: DecodingError.Context) -> String? {
        context.codingPath.isEmpty ? nil : context.codingPath.map(\.stringValue).joined(separator: ".")
    }

    /// The keys of `container`, refusing any not in `known`.
    static func keys(of container: KeyedDecodingContainer<Key>, known: Set<String>) throws -> Set<String> {
        let keys = Set(container.allKeys.map(\.stringValue))
        if let unknown = keys.subtracting(known).sorted().first {
            throw Invalid(description: "\(unknown): unknown key (known: \(known.sorted().joined(separator: ", ")))")
        }
        return keys
    }
}

/// `PUT vmm.side-cores`: `{"count": N}` or `{"auto": true}`, exactly one of them.
enum SideCoreRequest: Decodable {
    case count(Int)
    case automatic

    init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: APIRequestBody.Key.self)
        let keys = try APIRequestBody.keys(of: container, known: ["count", "auto"])
        guard keys.count == 1 else {
            throw APIRequestBody.Invalid(description: "body: give exactly one of count and auto")
        }
        if keys.contains("count") {
            self = .count(try container.decode(Int.self, forKey: .init("count")))
        } else if try container.decode(Bool.self, forKey: .init("auto")) {
            self = .automatic
        } else {
            throw APIRequestBody.Invalid(description: "auto: only true is taken (give count for a fixed number)")
        }
    }
}

/// `PUT vm.shutdown`: no body, `{}` or `{"graceful": false}` for a hard stop;
/// `{"graceful": true}` with an optional `"timeoutSeconds": N` for the power button and a deadline.
public struct ShutdownRequest: Decodable {
    /// Also `hvctl shutdown --timeout`'s default and range.
    public static let defaultTimeoutSeconds = 30
    public static let timeoutRange = 1...3600

    /// nil: a hard stop; else the seconds the guest has to power off.
    let gracefulTimeoutSeconds: Int?

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: APIRequestBody.Key.self)
        let keys = try APIRequestBody.keys(of: container, known: ["graceful", "timeoutSeconds"])
        let graceful = try keys.contains("graceful") && container.decode(Bool.self, forKey: .init("graceful"))
        guard keys.contains("timeoutSeconds") else {
            gracefulTimeoutSeconds = graceful ? Self.defaultTimeoutSeconds : nil
            return
        }
        guard graceful else {
            throw APIRequestBody.Invalid(description: "timeoutSeconds: only with \"graceful\": true")
        }
        // As a Double first, so 2.5 or 1e9 is refused with its value rather than as bad JSON.
        let timeout = try container.decode(Double.self, forKey: .init("timeoutSeconds"))
        let range = Self.timeoutRange
        guard timeout.rounded() == timeout, Double(range.lowerBound)...Double(range.upperBound) ~= timeout else {
            let shown = abs(timeout) < 1e15 && timeout.rounded() == timeout ? "\(Int(timeout))" : "\(timeout)"
            throw APIRequestBody.Invalid(
                description: "timeoutSeconds: \(shown) is not a whole number from \(range.lowerBound) "
                    + "to \(range.upperBound)")
        }
        gracefulTimeoutSeconds = Int(timeout)
    }
}
