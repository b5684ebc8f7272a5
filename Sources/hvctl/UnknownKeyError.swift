/// A key in a `--config` file that nothing reads (a misspelt `memroy` would otherwise be
/// ignored and its default used): refused with its JSON path, e.g. `.vms[0].memroy`.
struct UnknownKeyError: Error {
    let path: String

    private struct AnyKey: CodingKey {
        let stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// Throws for the first key of the object `decoder` is at that is not in `known`.
    static func check(_ decoder: Decoder, known: Set<String>) throws {
        let container = try decoder.container(keyedBy: AnyKey.self)
        guard let unknown = container.allKeys.map(\.stringValue).sorted().first(where: { !known.contains($0) }) else {
            return
        }
        let path = (decoder.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" } + [".\(unknown)"])
            .joined()
        throw UnknownKeyError(path: path)
    }
}
