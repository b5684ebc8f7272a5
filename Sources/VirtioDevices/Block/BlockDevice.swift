import Glibc
import Hypervisor
import Synchronization

/// How one `--disk` is backed.
public struct BlockDeviceConfiguration: Equatable, Sendable {
    public enum Backend: String, Equatable, Sendable { case file, null }
    public var path: String?
    public var readOnly = false
    public var queueCount = 1
    /// The ring size offered for each queue.
    public var queueSize = QueueSizeLimit.defaultSize
    public var backend: Backend = .file
    /// Serial number returned by GET_ID (at most 20 bytes).
    public var id: String
    /// Size of a null disk (a file disk has its file's size).
    public var nullSizeInBytes: UInt64 = 0

    public init(path: String?, id: String) {
        self.path = path
        self.id = id
    }
}

/// virtio-blk: multi-queue, each queue served by its own handler with its own io_uring.
public final class BlockDevice: VirtioDevice, @unchecked Sendable {
    // @unchecked: `transportNeedsReset` is set once, by the transport that owns the device, before
    // any queue runs; the handlers of the running queues are behind `handlers`' lock.
    static let featureSizeMax: UInt64 = 1 << 1
    static let featureSegMax: UInt64 = 1 << 2
    static let featureReadOnly: UInt64 = 1 << 5
    static let featureBlockSize: UInt64 = 1 << 6
    static let featureFlush: UInt64 = 1 << 9
    static let featureMultiQueue: UInt64 = 1 << 12
    public static let featureDiscard: UInt64 = 1 << 13
    public static let featureWriteZeroes: UInt64 = 1 << 14
    /// How many request queues a disk may have.
    public static let queueCounts = 1...64
    static let sizeMax: UInt32 = 1 << 20
    static let segMax: UInt32 = 126

    public let configuration: BlockDeviceConfiguration
    public let name: String
    public let capacityInSectors: UInt64
    let fd: Int32
    private let handlers = Lock<[BlockQueueHandler]>([])
    /// Set by the transport: puts the device in DEVICE_NEEDS_RESET (a broken driver).
    public var transportNeedsReset: ((String) -> Void)?
    /// Per-queue statistics, kept across resets.
    public let queueStatistics: [QueueStatistics]

    public let deviceType: UInt16 = 2
    public let pciClassCode: UInt32 = 0x01_80_00
    public var queueMaxSizes: [UInt16] { Array(repeating: configuration.queueSize, count: configuration.queueCount) }

    public var deviceFeatures: UInt64 {
        var features =
            Self.featureSizeMax | Self.featureSegMax | Self.featureBlockSize | Self.featureFlush
            | Self.featureDiscard | Self.featureWriteZeroes
        if configuration.readOnly { features |= Self.featureReadOnly }
        if configuration.queueCount > 1 { features |= Self.featureMultiQueue }
        return features
    }

    public init(configuration: BlockDeviceConfiguration, name: String) throws {
        guard Self.queueCounts.contains(configuration.queueCount) else {
            throw ConfigurationError(
                .diskQueueCount, value: "\(configuration.queueCount)",
                "must be \(Self.queueCounts.lowerBound) to \(Self.queueCounts.upperBound)")
        }
        try QueueSizeLimit.check(configuration.queueSize, field: .diskQueueSize)
        self.configuration = configuration
        self.name = name
        switch configuration.backend {
        case .file:
            guard let path = configuration.path else {
                throw ConfigurationError(.diskPath, "a file-backed disk needs one")
            }
            let fd = open(path, (configuration.readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
            guard fd >= 0 else { throw ConfigurationError(.diskPath, value: path, String(cString: strerror(errno))) }
            var info = stat()
            guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG || (info.st_mode & S_IFMT) == S_IFBLK else {
                close(fd)
                throw ConfigurationError(.diskPath, value: path, "not a regular file or block device")
            }
            do {
                try DiskImageLock.acquire(fd: fd, path: path, readOnly: configuration.readOnly)
            } catch {
                close(fd)
                throw error
            }
            var size = UInt64(info.st_size)
            if (info.st_mode & S_IFMT) == S_IFBLK { size = UInt64(lseek(fd, 0, SEEK_END)) }
            self.fd = fd
            capacityInSectors = size / BlockRequest.sectorSize
        case .null:
            fd = -1
            capacityInSectors = configuration.nullSizeInBytes / BlockRequest.sectorSize
        }
        queueStatistics = (0..<configuration.queueCount).map { _ in QueueStatistics() }
    }

    deinit {
        reset()
        if fd >= 0 { close(fd) }
    }

    public func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        var config = [UInt8](repeating: 0, count: 64)
        func put(_ bytes: [UInt8], at position: Int) {
            config.replaceSubrange(position..<(position + bytes.count), with: bytes)
        }
        put(LittleEndian.bytes(capacityInSectors), at: 0)
        put(LittleEndian.bytes(Self.sizeMax), at: 8)
        put(LittleEndian.bytes(Self.segMax), at: 12)
        put(LittleEndian.bytes(UInt32(BlockRequest.sectorSize)), at: 20)
        put(LittleEndian.bytes(UInt16(configuration.queueCount)), at: 34)
        put(LittleEndian.bytes(UInt32(UInt32.max / 512)), at: 36)  // max_discard_sectors
        put(LittleEndian.bytes(BlockRequest.maxDiscardSegments), at: 40)
        put(LittleEndian.bytes(UInt32(1)), at: 44)  // discard_sector_alignment
        put(LittleEndian.bytes(UInt32(UInt32.max / 512)), at: 48)  // max_write_zeroes_sectors
        put(LittleEndian.bytes(BlockRequest.maxDiscardSegments), at: 52)
        config[56] = 1  // write_zeroes_may_unmap
        for index in 0..<data.count { data[index] = offset + index < config.count ? config[offset + index] : 0 }
    }

    public func writeConfiguration(offset: Int, data: UnsafeRawBufferPointer) {}

    public func activate(memory: GuestMemory, features: UInt64, queues: [QueueContext]) throws -> [QueueHandler] {
        let created = try queues.map {
            try BlockQueueHandler(
                device: self, context: $0, memory: memory, features: features, statistics: queueStatistics[$0.index])
        }
        handlers.withLock { $0 = created }
        return created
    }

    public func reset() {
        let stopping = handlers.withLock { handlers -> [BlockQueueHandler] in
            defer { handlers = [] }
            return handlers
        }
        for handler in stopping { handler.quiesce() }
    }
}
