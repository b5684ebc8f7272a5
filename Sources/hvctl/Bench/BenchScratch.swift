import Glibc

/// The disks a bench reads, one per VM: the user's file (shared), the null backend, or 64 MiB
/// pattern files made in a temporary directory and removed at the end (also after Ctrl-C: the run
/// returns through it). Each VM gets a file of its own, so writing VMs do not contend for one
/// image's write lock.
final class BenchScratch {
    static let patternMebibytes: UInt64 = 64

    /// The disk of each VM (and of each host loop).
    let disks: [BenchDisk]
    private let directory: String?
    private var files: [String] = []

    init(disk path: String?, null: Bool, count: Int) throws {
        if null {
            disks = Array(repeating: .null(bytes: Self.patternMebibytes << 20), count: count)
            directory = nil
            return
        }
        if let path {
            var status = stat()
            guard stat(path, &status) == 0 else {
                throw BenchError("--disk \(path): \(String(cString: strerror(errno)))")
            }
            let blocks = UInt64(status.st_size) / 4096
            guard blocks > 0 else { throw BenchError("--disk \(path): smaller than one 4 KiB block") }
            disks = Array(repeating: .file(path, blocks: blocks), count: count)
            directory = nil
            return
        }
        var template = Array("/tmp/hvctl-bench-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw BenchError("cannot make a temporary directory: \(String(cString: strerror(errno)))")
        }
        let directory = String(cString: made)
        self.directory = directory
        let blocks = (Self.patternMebibytes << 20) / 4096
        var disks: [BenchDisk] = []
        var files: [String] = []
        for index in 0..<count {
            let path = directory + (count == 1 ? "/pattern.img" : "/pattern\(index).img")
            do {
                try Self.writePattern(to: path, blocks: blocks)
            } catch {
                for file in files { unlink(file) }
                rmdir(directory)
                throw error
            }
            files.append(path)
            disks.append(.file(path, blocks: blocks))
        }
        self.disks = disks
        self.files = files
    }

    /// Block i starts with its sector number (8 i), which iobench and the host loop check.
    private static func writePattern(to path: String, blocks: UInt64) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw BenchError("\(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        let perChunk = UInt64(chunk.count / 4096)
        var block: UInt64 = 0
        while block < blocks {
            for index in 0..<Int(perChunk) {
                withUnsafeBytes(of: ((block + UInt64(index)) * 8).littleEndian) {
                    chunk.replaceSubrange(index * 4096..<index * 4096 + 8, with: $0)
                }
            }
            guard write(fd, chunk, chunk.count) == chunk.count else {
                unlink(path)
                throw BenchError("\(path): \(String(cString: strerror(errno)))")
            }
            block += perChunk
        }
    }

    /// Removes the pattern files and their directory, if this run made them.
    func remove() {
        guard let directory else { return }
        for file in files { unlink(file) }
        rmdir(directory)
    }
}
