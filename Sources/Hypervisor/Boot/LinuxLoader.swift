/// What to boot: a bzImage or a PVH-capable ELF vmlinux, an optional initrd and the command line.
public struct LinuxBootConfiguration: Sendable {
    public var kernelPath: String
    public var initrdPath: String?
    public var commandLine: String

    public init(kernelPath: String, initrdPath: String? = nil, commandLine: String) {
        self.kernelPath = kernelPath
        self.initrdPath = initrdPath
        self.commandLine = commandLine
    }
}

/// A kernel placed in guest memory, ready for the boot vCPU.
public struct LoadedKernel: Equatable {
    public enum Format: String, Equatable { case bzImage, pvh }
    public let format: Format
    public let entryAddress: UInt64
    /// The zero page (bzImage) or `hvm_start_info` (PVH) address.
    public let bootParametersAddress: UInt64
    public let initrdAddress: UInt64?

    /// Puts the boot vCPU in the state the entry point expects.
    public func prepare(_ vcpu: VCPU, memory: GuestMemory) throws {
        switch format {
        case .bzImage:
            try BootCPUState.enterLongMode(vcpu, memory: memory, entry: entryAddress, zeroPage: bootParametersAddress)
        case .pvh:
            try BootCPUState.enterPVH(vcpu, memory: memory, entry: entryAddress, startInfo: bootParametersAddress)
        }
    }
}

/// Loads Linux through the x86 64-bit boot protocol (bzImage) or the PVH entry (ELF vmlinux).
public enum LinuxLoader {
    /// x86 Linux's COMMAND_LINE_SIZE less the terminating NUL, for PVH where no header says.
    static let pvhCommandLineLimit = 2047

    public static func load(_ configuration: LinuxBootConfiguration, into memory: GuestMemory, rsdpAddress: UInt64)
        throws -> LoadedKernel
    {
        let kernel = try BootFile(path: configuration.kernelPath)
        defer { kernel.close() }
        let initrd = try configuration.initrdPath.map { try BootFile(path: $0) }
        defer { initrd?.close() }
        let header = try kernel.read(at: 0, count: 0x280)
        if BzImage.matches(header) {
            return try BzImage.load(
                kernel, header: header, initrd: initrd, commandLine: configuration.commandLine,
                memory: memory, rsdpAddress: rsdpAddress)
        }
        if PVHImage.matches(header) {
            return try PVHImage.load(
                kernel, header: header, initrd: initrd, commandLine: configuration.commandLine,
                memory: memory, rsdpAddress: rsdpAddress)
        }
        throw BootError.notAKernel(path: kernel.path)
    }

    /// Places the initrd as high as possible below `limit`, page aligned, above `kernelEnd`.
    static func placeInitrd(_ initrd: BootFile, below limit: UInt64, kernelEnd: UInt64, memory: GuestMemory) throws
        -> UInt64
    {
        let lowEnd = min(memory.regions[0].endAddress, limit)
        let floor = (kernelEnd + 0xFFF) & ~0xFFF
        guard lowEnd > floor, initrd.sizeInBytes <= lowEnd - floor else {
            throw BootError.initrdDoesNotFit(
                path: initrd.path, sizeInBytes: initrd.sizeInBytes,
                availableInBytes: lowEnd > floor ? lowEnd - floor : 0)
        }
        let address = (lowEnd - initrd.sizeInBytes) & ~0xFFF
        try initrd.copy(to: memory, at: address, offset: 0, length: initrd.sizeInBytes)
        return address
    }

    static func writeCommandLine(_ commandLine: String, limit: Int, memory: GuestMemory) throws {
        let bytes = Array(commandLine.utf8)
        let limit = min(limit, X86Layout.commandLineCapacity - 1)
        if bytes.count > limit { throw BootError.commandLineTooLong(length: bytes.count, limit: limit) }
        try memory.write(bytes + [0], at: X86Layout.commandLineAddress)
    }

    static func checkFits(_ kernel: BootFile, start: UInt64, end: UInt64, memory: GuestMemory) throws {
        guard end >= start, memory.contains(start, length: end - start) else {
            throw BootError.kernelDoesNotFit(path: kernel.path, endAddress: end, memoryInBytes: memory.totalSizeInBytes)
        }
    }
}
