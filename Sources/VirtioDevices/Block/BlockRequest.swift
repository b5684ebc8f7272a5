import Hypervisor

/// A virtio-blk request, parsed and checked before any I/O is issued.
public struct BlockRequest: Equatable {
    public enum Kind: Equatable {
        case read(sector: UInt64, buffers: BufferList)
        case write(sector: UInt64, buffers: BufferList)
        case flush
        case getID(buffer: VirtqueueBuffer)
        /// DISCARD or WRITE_ZEROES ranges, in sectors.
        case discard(ranges: [(sector: UInt64, count: UInt32)])
        case writeZeroes(ranges: [(sector: UInt64, count: UInt32)], unmap: Bool)

        public static func == (lhs: Kind, rhs: Kind) -> Bool {
            switch (lhs, rhs) {
            case let (.read(a, b), .read(c, d)), let (.write(a, b), .write(c, d)): return a == c && b == d
            case (.flush, .flush): return true
            case let (.getID(a), .getID(b)): return a == b
            case let (.discard(a), .discard(b)): return a.elementsEqual(b) { $0 == $1 }
            case let (.writeZeroes(a, x), .writeZeroes(b, y)): return x == y && a.elementsEqual(b) { $0 == $1 }
            default: return false
            }
        }
    }

    /// What the device answers without doing I/O.
    public enum Rejection: Equatable, Sendable {
        /// Malformed: no room for a status byte. The chain is returned with nothing written.
        case noStatusByte
        case ioError
        case unsupported
    }

    /// A refused request and where its status byte is (nil when there is none).
    public struct Refusal: Error, Equatable {
        public let rejection: Rejection
        public let statusAddress: UInt64?
    }

    public static let sectorSize: UInt64 = 512
    public static let typeIn: UInt32 = 0
    public static let typeOut: UInt32 = 1
    public static let typeFlush: UInt32 = 4
    public static let typeGetID: UInt32 = 8
    public static let typeDiscard: UInt32 = 11
    public static let typeWriteZeroes: UInt32 = 13
    public static let statusOK: UInt8 = 0
    public static let statusIOError: UInt8 = 1
    public static let statusUnsupported: UInt8 = 2
    public static let idLength = 20
    public static let maxDiscardSegments: UInt32 = 32

    public let kind: Kind
    /// Guest address of the status byte.
    public let statusAddress: UInt64
    /// Bytes of data the request moves (for statistics).
    public let dataLength: UInt64

    /// Parses `chain`. On a rejection the status byte's address comes with it (when there is one).
    public static func parse(
        _ chain: DescriptorChain, memory: GuestMemory, capacityInSectors: UInt64, readOnly: Bool,
        features: UInt64
    ) -> Result<BlockRequest, Refusal> {
        // The status byte is the last byte of the last buffer, which must be device-writable.
        guard let last = chain.buffers.last, last.isDeviceWritable, last.length >= 1 else {
            return .failure(Refusal(rejection: .noStatusByte, statusAddress: nil))
        }
        let statusAddress = last.address + UInt64(last.length) - 1
        func reject(_ reason: Rejection) -> Result<BlockRequest, Refusal> {
            .failure(Refusal(rejection: reason, statusAddress: statusAddress))
        }

        // The 16-byte header: read in place when its first buffer holds it (every driver we know
        // does that; no array per request), else gathered across readable buffers.
        let type: UInt32
        let sector: UInt64
        if let first = chain.buffers.first, !first.isDeviceWritable, first.length >= 16 {
            guard let header = try? memory.slice(at: first.address, length: 16) else { return reject(.ioError) }
            type = UInt32(littleEndian: header.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
            sector = UInt64(littleEndian: header.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        } else {
            var header: [UInt8] = []
            for buffer in chain.readable where header.count < 16 {
                let take = min(Int(buffer.length), 16 - header.count)
                guard let bytes = try? memory.read(at: buffer.address, count: take) else { return reject(.ioError) }
                header += bytes
            }
            guard header.count == 16 else { return reject(.ioError) }
            type = LittleEndian.load(UInt32.self, from: header, at: 0)
            sector = LittleEndian.load(UInt64.self, from: header, at: 8)
        }

        // Payload buffers: readable ones past the header, and writable ones less the status byte.
        // One pass by index (the walk put every readable buffer first), so nothing here is generic.
        var readablePayload = BufferList()
        var writablePayload = BufferList()
        var skipped = 0
        let lastIndex = chain.buffers.count - 1
        for index in 0...lastIndex {
            let buffer = chain.buffers[index]
            if index == lastIndex {
                // The status buffer (checked above: writable, at least 1 byte), less its last byte.
                if buffer.length > 1 {
                    writablePayload.append(
                        VirtqueueBuffer(address: buffer.address, length: buffer.length - 1, isDeviceWritable: true))
                }
                continue
            }
            if buffer.isDeviceWritable {
                writablePayload.append(buffer)
                continue
            }
            let skip = min(Int(buffer.length), 16 - skipped)
            skipped += skip
            if UInt32(skip) < buffer.length {
                readablePayload.append(
                    VirtqueueBuffer(
                        address: buffer.address + UInt64(skip), length: buffer.length - UInt32(skip),
                        isDeviceWritable: false))
            }
        }

        func checkRange(_ sector: UInt64, bytes: UInt64) -> Bool {
            guard bytes % sectorSize == 0 else { return false }
            let (end, overflow) = sector.addingReportingOverflow(bytes / sectorSize)
            return !overflow && end <= capacityInSectors
        }
        func length(_ buffers: BufferList) -> UInt64 { buffers.reduce(0) { $0 + UInt64($1.length) } }

        switch type {
        case typeIn, typeOut:
            // A read fills device-writable buffers, a write carries readable ones; never both.
            let isWrite = type == typeOut
            let (data, other) = isWrite ? (readablePayload, writablePayload) : (writablePayload, readablePayload)
            guard !(isWrite && readOnly), other.isEmpty, checkRange(sector, bytes: length(data)) else {
                return reject(.ioError)
            }
            let kind: Kind = isWrite ? .write(sector: sector, buffers: data) : .read(sector: sector, buffers: data)
            return .success(BlockRequest(kind: kind, statusAddress: statusAddress, dataLength: length(data)))
        case typeFlush:
            return .success(BlockRequest(kind: .flush, statusAddress: statusAddress, dataLength: 0))
        case typeGetID:
            guard let buffer = writablePayload.first, buffer.length >= 1 else { return reject(.ioError) }
            return .success(BlockRequest(kind: .getID(buffer: buffer), statusAddress: statusAddress, dataLength: 0))
        case typeDiscard, typeWriteZeroes:
            let feature: UInt64 = type == typeDiscard ? BlockDevice.featureDiscard : BlockDevice.featureWriteZeroes
            guard features & feature != 0 else { return reject(.unsupported) }
            guard !readOnly else { return reject(.ioError) }
            let total = length(readablePayload)
            guard total > 0, total % 16 == 0, total / 16 <= UInt64(maxDiscardSegments) else { return reject(.ioError) }
            var bytes: [UInt8] = []
            for buffer in readablePayload {
                guard let chunk = try? memory.read(at: buffer.address, count: Int(buffer.length)) else {
                    return reject(.ioError)
                }
                bytes += chunk
            }
            var ranges: [(sector: UInt64, count: UInt32)] = []
            var unmap = false
            for segment in stride(from: 0, to: bytes.count, by: 16) {
                // In bounds: the payload is a whole number of 16-byte segments (checked above).
                let start = LittleEndian.load(UInt64.self, from: bytes, at: segment)
                let count = LittleEndian.load(UInt32.self, from: bytes, at: segment + 8)
                let flags = LittleEndian.load(UInt32.self, from: bytes, at: segment + 12)
                // Only the unmap flag exists, and only for WRITE_ZEROES.
                guard flags & ~1 == 0, type == typeWriteZeroes || flags == 0 else { return reject(.unsupported) }
                guard checkRange(start, bytes: UInt64(count) * sectorSize) else { return reject(.ioError) }
                unmap = unmap || flags & 1 != 0
                ranges.append((start, count))
            }
            let kind: Kind = type == typeDiscard ? .discard(ranges: ranges) : .writeZeroes(ranges: ranges, unmap: unmap)
            return .success(BlockRequest(kind: kind, statusAddress: statusAddress, dataLength: 0))
        default:
            return reject(.unsupported)
        }
    }
}
