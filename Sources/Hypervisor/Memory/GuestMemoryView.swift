import CKVM

/// A fixed range of guest RAM checked once against `GuestMemory` and then read and written by
/// offset, for structures the device touches on every request (a virtqueue's available and used
/// rings). Every access is checked against the range; one outside it reads 0 and writes nothing,
/// so no offset can reach past the range or trap. The view is valid as long as the
/// `GuestMemory` it came from lives (the owner keeps both); the guest may change it at any time.
public struct GuestMemoryView: @unchecked Sendable {
    // @unchecked: `base` points into a GuestMemory mapping that outlives the view; what it points
    // to is guest RAM, shared with the guest and every thread anyway.
    @usableFromInline let base: UnsafeMutableRawPointer
    public let count: Int

    @usableFromInline init(base: UnsafeMutableRawPointer, count: Int) {
        self.base = base
        self.count = count
    }

    @inlinable func fits<T>(_: T.Type, at offset: Int) -> Bool {
        offset >= 0 && offset <= count - MemoryLayout<T>.size
    }

    /// A little-endian value at `offset` (unaligned allowed).
    @inlinable public func load<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        guard fits(T.self, at: offset) else { return 0 }
        return T(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    @inlinable public func store<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        guard fits(T.self, at: offset) else { return }
        base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }

    /// A little-endian 16-bit index or flags word loaded with acquire ordering: what the driver
    /// wrote before releasing it is visible. `offset` must be 2-byte aligned in guest RAM
    /// (virtqueue rings are), else the load reads 0.
    @inlinable public func loadAcquire(_: UInt16.Type, at offset: Int) -> UInt16 {
        guard fits(UInt16.self, at: offset), Int(bitPattern: base + offset) % 2 == 0 else { return 0 }
        return UInt16(littleEndian: ckvm_load_acquire_u16(base + offset))
    }

    /// Stores a 16-bit index or flags word with release ordering: everything written before it
    /// is visible to the driver first. `offset` must be 2-byte aligned, else nothing is stored.
    @inlinable public func storeRelease(_ value: UInt16, at offset: Int) {
        guard fits(UInt16.self, at: offset), Int(bitPattern: base + offset) % 2 == 0 else { return }
        ckvm_store_release_u16(base + offset, value.littleEndian)
    }
}

extension GuestMemory {
    /// A view of `[address, address + length)`, which must lie inside one region.
    public func view(at address: UInt64, length: UInt64) throws -> GuestMemoryView {
        let slice = try slice(at: address, length: length)
        guard let base = slice.baseAddress else { throw GuestMemoryError(address: address, length: length) }
        return GuestMemoryView(base: base, count: slice.count)
    }
}
