import ArgumentParser
import FoundationEssentials
import Glibc
import VMM

/// An output file (`--stats-json`, `hvctl bench --json` and `--plot`): its directory is checked
/// before the work starts so a bad path fails early and nothing is created; the document is
/// written whole at the end. Errors name `flag`.
struct OutputFile {
    let flag: String
    let path: String

    init(flag: String, path: String) throws {
        self.flag = flag
        var status = stat()
        if stat(path, &status) == 0 && status.st_mode & S_IFMT == S_IFDIR {
            throw ValidationError("\(flag) \(path): is a directory")
        }
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        if access(directory.isEmpty ? "/" : directory, W_OK) != 0 {
            throw ValidationError("\(flag) \(path): \(String(cString: strerror(errno)))")
        }
        self.path = path
    }

    /// `document` as JSON (keys sorted) and a newline.
    func write(_ document: some Encodable) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try write(bytes: Array(try encoder.encode(document)) + [UInt8(ascii: "\n")])
    }

    func write(bytes data: [UInt8]) throws {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ValidationError("\(flag) \(path): \(String(cString: strerror(errno)))") }
        let written = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
        // Written whole then renamed, so the file never holds half a document.
        guard written == data.count, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw ValidationError("\(flag) \(path): \(String(cString: strerror(errno)))")
        }
    }
}
