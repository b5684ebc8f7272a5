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
            return
                """
                \(path) uses Linux boot protocol \(version >> 8).\(String(format2: version & 0xFF)); hvctl needs 2.12 \
                or later with a 64-bit entry point
                """
        case .noPVHEntry(let path):
            return
                """
                \(path) is an ELF without a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); build the kernel with \
                CONFIG_PVH=y
                """
        case .kernelDoesNotFit(let path, let end, let memory):
            return "\(path) needs guest memory up to \(end >> 20) MiB but the guest has \(memory >> 20) MiB"
        case .initrdDoesNotFit(let path, let size, let available):
            return
                """
                initrd \(path) (\(size >> 10) KiB) does not fit in the \(available >> 10) KiB of low guest memory \
                left after the kernel
                """
        case .commandLineTooLong(let length, let limit):
            return "the kernel command line is \(length) bytes; this kernel accepts at most \(limit)"
        }
    }
}

extension String {
    /// Two decimal digits, zero padded (boot protocol minor versions).
    init(format2 value: UInt16) {
        self = value < 10 ? "0\(value)" : "\(value)"
    }
}
