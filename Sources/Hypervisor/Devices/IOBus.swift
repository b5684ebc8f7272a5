/// A device on the port-I/O or MMIO bus. `offset` is relative to the range it was registered at;
/// `data.count` is the access width (1, 2, 4 or 8 bytes). Called from vCPU threads, possibly concurrently.
public protocol BusDevice: AnyObject, Sendable {
    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer)
    func write(offset: UInt64, data: UnsafeRawBufferPointer)
}

/// Routes guest accesses to devices by address range. Registration happens before vCPUs run;
/// lookups after that are read-only.
public final class IOBus: @unchecked Sendable {
    // @unchecked: `ranges` changes only before the vCPU threads start (see above).
    private struct Range {
        let base: UInt64
        let length: UInt64
        let device: BusDevice
    }

    /// Two devices claimed overlapping addresses: a wiring bug in the VMM.
    public struct OverlapError: Error, CustomStringConvertible {
        public let base: UInt64
        public let length: UInt64
        public var description: String {
            "device range 0x\(String(base, radix: 16)) (+\(length)) overlaps another device"
        }
    }

    private var ranges: [Range] = []

    public init() {}

    public func register(_ device: BusDevice, base: UInt64, length: UInt64) throws {
        for range in ranges where base < range.base + range.length && range.base < base + length {
            throw OverlapError(base: base, length: length)
        }
        ranges.append(Range(base: base, length: length, device: device))
        ranges.sort { $0.base < $1.base }
    }

    private func find(_ address: UInt64, width: Int) -> Range? {
        var low = 0
        var high = ranges.count
        while low < high {
            let mid = (low + high) / 2
            if ranges[mid].base + ranges[mid].length <= address { low = mid + 1 } else { high = mid }
        }
        guard low < ranges.count else { return nil }
        let range = ranges[low]
        // Offsets, not sums: an address near the top of the space must not overflow.
        guard address >= range.base, UInt64(width) <= range.length, address - range.base <= range.length - UInt64(width)
        else { return nil }
        return range
    }

    /// Reads from the device at `address`; unclaimed addresses read as all ones, like an open bus.
    public func read(_ address: UInt64, into data: UnsafeMutableRawBufferPointer) {
        if let range = find(address, width: data.count) {
            range.device.read(offset: address - range.base, into: data)
        } else {
            data.initializeMemory(as: UInt8.self, repeating: 0xFF)
        }
    }

    /// Writes to the device at `address`; writes to unclaimed addresses are dropped.
    public func write(_ address: UInt64, data: UnsafeRawBufferPointer) {
        if let range = find(address, width: data.count) {
            range.device.write(offset: address - range.base, data: data)
        }
    }
}
