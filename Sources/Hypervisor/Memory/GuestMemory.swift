import Glibc

/// An access outside guest RAM.
public struct GuestMemoryError: Error, CustomStringConvertible, Equatable {
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
public struct GuestMemoryRegion {
    public let guestAddress: UInt64
    public let sizeInBytes: UInt64
    @usableFromInline let host: UnsafeMutableRawPointer

    @inlinable public var endAddress: UInt64 { guestAddress + sizeInBytes }
}

/// Owns guest RAM: the only holder of host pointers into it.
///
/// Every access checks `address + length` (overflow included) against a single
/// region and throws `GuestMemoryError` otherwise, so guest-controlled addresses
/// can be passed in directly. All pointer arithmetic on guest RAM lives in this file.
/// The accessors the virtqueue uses per descriptor are `@inlinable`, so they are specialized in
/// the device code instead of resolving generic metadata at run time on every access.
public final class GuestMemory {
    public let regions: [GuestMemoryRegion]

    /// Maps anonymous memory for each `(guestAddress, sizeInBytes)` range.
    public init(ranges: [(guestAddress: UInt64, sizeInBytes: UInt64)]) throws {
        var regions: [GuestMemoryRegion] = []
        for range in ranges {
            let size = Int(range.sizeInBytes)
            let pointer = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            guard let pointer, pointer != MAP_FAILED else {
                for region in regions { munmap(region.host, Int(region.sizeInBytes)) }
                throw KVMError(.mmap(bytes: size))
            }
            regions.append(GuestMemoryRegion(guestAddress: range.guestAddress, sizeInBytes: range.sizeInBytes, host: pointer))
        }
        self.regions = regions
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

    /// Fills `[address, address + length)` with zero bytes.
    public func zero(at address: UInt64, length: UInt64) throws {
        let target = try slice(at: address, length: length)
        if length > 0 { target.initializeMemory(as: UInt8.self, repeating: 0) }
    }
}
