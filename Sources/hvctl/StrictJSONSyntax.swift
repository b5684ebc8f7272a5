/// A `--config` file's JSON syntax checked strictly (RFC 8259) before it is decoded:
/// Foundation's decoder accepts trailing commas and duplicate keys (the last one silently wins)
/// and reports no position. This pass refuses both and names the line and column, and the
/// duplicate's JSON path. It only checks; decoding stays JSONDecoder's.
struct StrictJSONSyntax {
    struct Failure: Error, Equatable {
        let line: Int
        let column: Int
        let message: String
        var description: String { "not valid JSON at line \(line), column \(column): \(message)" }
    }

    /// Nesting deeper than this is refused (a configuration needs three levels).
    static let maxDepth = 64

    private let bytes: [UInt8]
    private var index = 0

    static func check(_ bytes: [UInt8]) throws(Failure) {
        var parser = StrictJSONSyntax(bytes: bytes)
        parser.skipSpace()
        try parser.value(path: "", depth: 0)
        parser.skipSpace()
        guard parser.index == bytes.count else { throw parser.failure("unexpected text after the document") }
    }

    private init(bytes: [UInt8]) { self.bytes = bytes }

    private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

    private func failure(_ message: String) -> Failure {
        var line = 1
        var column = 1
        for byte in bytes[..<min(index, bytes.count)] {
            if byte == UInt8(ascii: "\n") {
                line += 1
                column = 1
            } else if byte & 0xC0 != 0x80 {
                column += 1  // characters, not UTF-8 continuation bytes
            }
        }
        return Failure(line: line, column: column, message: message)
    }

    private mutating func skipSpace() {
        while let byte = current, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { index += 1 }
    }

    private mutating func value(path: String, depth: Int) throws(Failure) {
        guard depth < Self.maxDepth else { throw failure("nested more than \(Self.maxDepth) levels") }
        switch current {
        case UInt8(ascii: "{"): try object(path: path, depth: depth)
        case UInt8(ascii: "["): try array(path: path, depth: depth)
        case UInt8(ascii: "\""): _ = try string()
        case UInt8(ascii: "t"): try literal("true")
        case UInt8(ascii: "f"): try literal("false")
        case UInt8(ascii: "n"): try literal("null")
        case let byte? where byte == UInt8(ascii: "-") || (48...57).contains(byte): try number()
        case nil: throw failure("the document ends where a value should be")
        default: throw failure("expected a value")
        }
    }

    private mutating func object(path: String, depth: Int) throws(Failure) {
        index += 1
        skipSpace()
        if current == UInt8(ascii: "}") {
            index += 1
            return
        }
        var keys = Set<String>()
        while true {
            guard current == UInt8(ascii: "\"") else {
                throw failure(keys.isEmpty ? "expected a key in quotes" : "a trailing comma (or a key not in quotes)")
            }
            let keyStart = index
            let key = try string()
            let keyPath = path + "." + key
            guard keys.insert(key).inserted else {
                index = keyStart
                throw failure("\(keyPath): the key is given twice")
            }
            skipSpace()
            guard current == UInt8(ascii: ":") else { throw failure("expected ':' after the key") }
            index += 1
            skipSpace()
            try value(path: keyPath, depth: depth + 1)
            skipSpace()
            if current == UInt8(ascii: ",") {
                index += 1
                skipSpace()
                continue
            }
            guard current == UInt8(ascii: "}") else { throw failure("expected ',' or '}'") }
            index += 1
            return
        }
    }

    private mutating func array(path: String, depth: Int) throws(Failure) {
        index += 1
        skipSpace()
        if current == UInt8(ascii: "]") {
            index += 1
            return
        }
        var element = 0
        while true {
            if current == UInt8(ascii: "]") { throw failure("a trailing comma") }
            try value(path: "\(path)[\(element)]", depth: depth + 1)
            element += 1
            skipSpace()
            if current == UInt8(ascii: ",") {
                index += 1
                skipSpace()
                continue
            }
            guard current == UInt8(ascii: "]") else { throw failure("expected ',' or ']'") }
            index += 1
            return
        }
    }

    /// A string's contents (escapes decoded, for comparing keys).
    private mutating func string() throws(Failure) -> String {
        index += 1
        var raw: [UInt8] = []
        while true {
            guard let byte = current else { throw failure("a string is not closed") }
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                return String(decoding: raw, as: UTF8.self)
            case UInt8(ascii: "\\"):
                index += 1
                guard let escaped = current else { throw failure("a string is not closed") }
                index += 1
                let simple: [UInt8: UInt8] = [
                    UInt8(ascii: "\""): 0x22, UInt8(ascii: "\\"): 0x5C, UInt8(ascii: "/"): 0x2F,
                    UInt8(ascii: "b"): 0x08, UInt8(ascii: "f"): 0x0C, UInt8(ascii: "n"): 0x0A,
                    UInt8(ascii: "r"): 0x0D, UInt8(ascii: "t"): 0x09,
                ]
                if let value = simple[escaped] {
                    raw.append(value)
                } else if escaped == UInt8(ascii: "u") {
                    var code: UInt32 = 0
                    for _ in 0..<4 {
                        guard let digit = current, let value = Self.hexValue(digit) else {
                            throw failure("\\u needs four hex digits")
                        }
                        code = code << 4 | value
                        index += 1
                    }
                    // A surrogate half stays an escape, so equal escapes still compare equal.
                    raw += Array((Unicode.Scalar(code).map { String($0) } ?? "\\u{\(code)}").utf8)
                } else {
                    throw failure("an unknown escape in a string")
                }
            case 0..<0x20:
                throw failure("a control character in a string (escape it)")
            default:
                raw.append(byte)
                index += 1
            }
        }
    }

    private static func hexValue(_ byte: UInt8) -> UInt32? {
        switch byte {
        case 48...57: UInt32(byte - 48)
        case 65...70: UInt32(byte - 55)
        case 97...102: UInt32(byte - 87)
        default: nil
        }
    }

    private mutating func literal(_ word: String) throws(Failure) {
        let expected = Array(word.utf8)
        guard index + expected.count <= bytes.count, Array(bytes[index..<(index + expected.count)]) == expected else {
            throw failure("expected a value")
        }
        index += expected.count
    }

    private mutating func number() throws(Failure) {
        func digits() -> Int {
            let start = index
            while let byte = current, (48...57).contains(byte) { index += 1 }
            return index - start
        }
        if current == UInt8(ascii: "-") { index += 1 }
        let leadingZero = current == UInt8(ascii: "0")
        let integer = digits()
        guard integer > 0 else { throw failure("a number needs digits") }
        guard !(leadingZero && integer > 1) else { throw failure("a number cannot start with 0") }
        if current == UInt8(ascii: ".") {
            index += 1
            guard digits() > 0 else { throw failure("a number needs digits after '.'") }
        }
        if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
            index += 1
            if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
            guard digits() > 0 else { throw failure("a number needs digits in its exponent") }
        }
    }
}
