import Glibc

/// An access outside guest RAM.
public struct GuestMemoryError: Error, CustomStringConvertible, Equatable, Sendable {
    public let address: UInt64
    public let length: UInt64
    @usableFromInline init(address: UInt64, length: UInt64) {
        self.address = address
        self.length = length
    }
    public var description: String {
        "guest memory access of \(length) bytes at 0x\(String(address, radix: 16)) is outside guest RAM"
    }
}

/// One contiguous range of guest-physical RAM backed by one host mapping.
public struct GuestMemoryRegion: @unchecked Sendable {
    // @unchecked: `host` is a fixed mapping owned by GuestMemory for its whole life; what it
    // points to is guest RAM, which the guest shares with every thread anyway.
    public let guestAddress: UInt64
    public let sizeInBytes: UInt64
    @usableFromInline let host: UnsafeMutableRawPointer

    @inlinable public var endAddress: UInt64 { guestAddress + sizeInBytes }
}

/// Owns guest RAM: the only holder of host pointers into it.
///
/// Every access checks `address + length` (overflow included) against a single
/// region and throws `GuestMemoryError` otherwise, so guest-controlled addresses
/// can be passed in directly. All pointer arithmetic on guest RAM lives in this file and in
/// `GuestMemoryView` (fixed ranges read by offset, such as virtqueue rings).
/// The accessors the virtqueue uses per descriptor are `@inlinable`, so they are specialized in
/// the device code instead of resolving generic metadata at run time on every access.
public final class GuestMemory: Sendable {
    public let regions: [GuestMemoryRegion]

    /// Transparent huge page size: host mappings start on this boundary.
    static let hugePageSize = 2 << 20

    /// Maps anonymous memory for each `(guestAddress, sizeInBytes)` range.
    public init(ranges: [(guestAddress: UInt64, sizeInBytes: UInt64)]) throws {
        var regions: [GuestMemoryRegion] = []
        for range in ranges {
            let size = Int(range.sizeInBytes)
            guard let pointer = Self.mapHugePageAligned(size: size) else {
                for region in regions { munmap(region.host, Int(region.sizeInBytes)) }
                throw KVMError(.mmap(bytes: size))
            }
            regions.append(
                GuestMemoryRegion(guestAddress: range.guestAddress, sizeInBytes: range.sizeInBytes, host: pointer))
        }
        self.regions = regions
    }

    /// Anonymous memory starting on a 2 MiB boundary and marked for transparent huge pages, as
    /// QEMU and Cloud Hypervisor map guest RAM: KVM can then map guest memory with 2 MiB pages
    /// (host and guest addresses agree modulo 2 MiB), and a guest takes far fewer nested page
    /// faults. Under the nested rig, 4 KiB mappings meant ~30k NPT faults per boot, and L3 guests
    /// hung with a vCPU emulating the same instruction fetch millions of times
    /// (docs/smp-reliability.md).
    /// No huge pages on the host (THP off) leaves ordinary pages; only the mapping can fail.
    static func mapHugePageAligned(size: Int) -> UnsafeMutableRawPointer? {
        let (padded, overflow) = size.addingReportingOverflow(hugePageSize)
        guard !overflow,
            let raw = mmap(nil, padded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
            raw != MAP_FAILED
        else { return nil }
        let start = UInt(bitPattern: raw)
        let aligned = (start + UInt(hugePageSize - 1)) & ~UInt(hugePageSize - 1)
        let head = Int(aligned - start)
        // Give back the slack on both sides; both munmaps are within the padded mapping.
        if head > 0 { munmap(raw, head) }
        let tail = padded - head - size
        if tail > 0 { munmap(raw + head + size, tail) }
        let pointer = raw + head
        _ = madvise(pointer, size, MADV_HUGEPAGE)
        return pointer
    }

    deinit {
        for region in regions { munmap(region.host, Int(region.sizeInBytes)) }
    }

    public var totalSizeInBytes: UInt64 { regions.reduce(0) { $0 + $1.sizeInBytes } }

    /// Host address of a region, for `KVM_SET_USER_MEMORY_REGION` only.
    public func hostAddress(ofRegion index: Int) -> UInt64 {
        UInt64(UInt(bitPattern: regions[index].host))
    }

    /// A host view of `[address, address + length)`, which must lie inside one region.
    /// The buffer stays valid as long as this object lives; the guest may change it at any time.
    @inlinable public func slice(at address: UInt64, length: UInt64) throws -> UnsafeMutableRawBufferPointer {
        let (end, overflow) = address.addingReportingOverflow(length)
        if !overflow {
            for region in regions where address >= region.guestAddress && end <= region.endAddress {
                let offset = Int(address - region.guestAddress)
                return UnsafeMutableRawBufferPointer(start: region.host + offset, count: Int(length))
            }
        }
        throw GuestMemoryError(address: address, length: length)
    }

    public func contains(_ address: UInt64, length: UInt64) -> Bool {
        (try? slice(at: address, length: length)) != nil
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at address: UInt64) throws {
        let target = try slice(at: address, length: UInt64(bytes.count))
        if bytes.count > 0 { target.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
    }

    public func write(_ bytes: [UInt8], at address: UInt64) throws {
        try bytes.withUnsafeBytes { try write($0, at: address) }
    }

    public func read(at address: UInt64, count: Int) throws -> [UInt8] {
        let source = try slice(at: address, length: UInt64(count))
        return Array(source)
    }

    /// Stores a trivial value (little-endian, unaligned allowed).
    @inlinable public func store<T: FixedWidthInteger>(_ value: T, at address: UInt64) throws {
        let target = try slice(at: address, length: UInt64(MemoryLayout<T>.size))
        target.storeBytes(of: value.littleEndian, as: T.self)
    }

    @inlinable public func load<T: FixedWidthInteger>(_ type: T.Type, at address: UInt64) throws -> T {
        let source = try slice(at: address, length: UInt64(MemoryLayout<T>.size))
        return T(littleEndian: source.loadUnaligned(as: T.self))
    }

    /// Host views of guest buffers as an iovec array, for readv/writev and io_uring: fills
    /// `vectors` in order while it has room, leaving out a buffer outside guest RAM. Returns the
    /// entries filled and their total length; a caller compares that with what it expected.
    @inlinable public func fillIOVecs<Buffers: Sequence>(
        _ vectors: UnsafeMutableBufferPointer<iovec>, from buffers: Buffers
    )
        -> (count: Int, bytes: Int) where Buffers.Element == (address: UInt64, length: UInt64)
    {
        var count = 0
        var bytes = 0
        for buffer in buffers where count < vectors.count {
            guard let slice = try? slice(at: buffer.address, length: buffer.length) else { continue }
            vectors[count] = iovec(iov_base: slice.baseAddress, iov_len: slice.count)
            count += 1
            bytes += slice.count
        }
        return (count, bytes)
    }

    /// Fills `[address, address + length)` with zero bytes.
    public func zero(at address: UInt64, length: UInt64) throws {
        let target = try slice(at: address, length: length)
        if length > 0 { target.initializeMemory(as: UInt8.self, repeating: 0) }
    }
}
