import Glibc

/// A kernel or initrd file, read with pread straight into guest memory.
struct BootFile {
    let path: String
    let fd: Int32
    let sizeInBytes: UInt64

    init(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw BootError.unreadable(path: path, errno: errno) }
        var info = stat()
        if fstat(fd, &info) != 0 || (info.st_mode & S_IFMT) != S_IFREG {
            let code = (info.st_mode & S_IFMT) == S_IFDIR ? EISDIR : errno
            Glibc.close(fd)
            throw BootError.unreadable(path: path, errno: code == 0 ? EINVAL : code)
        }
        self.path = path
        self.fd = fd
        self.sizeInBytes = UInt64(info.st_size)
    }

    func close() { Glibc.close(fd) }

    /// Reads up to `count` bytes at `offset` (fewer at end of file).
    func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        let got = try buffer.withUnsafeMutableBytes { try readFully(into: $0, at: offset) }
        return Array(buffer.prefix(got))
    }

    /// Copies `length` bytes of the file at `offset` into guest memory at `address`.
    func copy(to memory: GuestMemory, at address: UInt64, offset: UInt64, length: UInt64) throws {
        let target = try memory.slice(at: address, length: length)
        let got = try readFully(into: target, at: offset)
        if got != Int(length) { throw BootError.unreadable(path: path, errno: EIO) }
    }

    private func readFully(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws -> Int {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw BootError.unreadable(path: path, errno: errno)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }
}
