import Glibc

/// A problem with what the user asked to boot: names the input and what is wrong with it.
public enum BootError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String, errno: Int32)
    case notAKernel(path: String)
    case bootProtocolTooOld(path: String, version: UInt16)
    case noPVHEntry(path: String)
    case kernelDoesNotFit(path: String, endAddress: UInt64, memoryInBytes: UInt64)
    case initrdDoesNotFit(path: String, sizeInBytes: UInt64, availableInBytes: UInt64)
    case commandLineTooLong(length: Int, limit: Int)

    public var description: String {
        switch self {
        case .unreadable(let path, let code):
            return "cannot read \(path): \(String(cString: strerror(code)))"
        case .notAKernel(let path):
            return "\(path) is neither a bzImage nor an x86-64 ELF vmlinux"
        case .bootProtocolTooOld(let path, let version):
            return "\(path) uses Linux boot protocol \(version >> 8).\(String(format2: version & 0xFF)); hvctl needs 2.12 or later with a 64-bit entry point"
        case .noPVHEntry(let path):
            return "\(path) is an ELF without a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); build the kernel with CONFIG_PVH=y"
        case .kernelDoesNotFit(let path, let end, let memory):
            return "\(path) needs guest memory up to \(end >> 20) MiB but the guest has \(memory >> 20) MiB; raise --memory"
        case .initrdDoesNotFit(let path, let size, let available):
            return "initrd \(path) (\(size >> 10) KiB) does not fit in the \(available >> 10) KiB of low guest memory left after the kernel; raise --memory"
        case .commandLineTooLong(let length, let limit):
            return "--cmdline is \(length) bytes; this kernel accepts at most \(limit)"
        }
    }
}

extension String {
    /// Two decimal digits, zero padded (boot protocol minor versions).
    init(format2 value: UInt16) {
        self = value < 10 ? "0\(value)" : "\(value)"
    }
}

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
