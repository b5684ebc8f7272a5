import CKVM
import Glibc

/// Reads KVM's binary statistics (`KVM_GET_STATS_FD`) of one VM or vCPU by KVM's own names.
/// Immutable after init and read with pread, so any thread may use it.
public final class KVMStatisticsReader: Sendable {
    private struct Descriptor {
        let name: String
        let dataOffset: Int
    }

    private let fd: Int32
    private let descriptors: [Descriptor]
    private let dataOffset: Int

    init(fd: Int32) throws {
        self.fd = fd
        var header = kvm_stats_header()
        guard pread(fd, &header, MemoryLayout<kvm_stats_header>.size, 0) == MemoryLayout<kvm_stats_header>.size else {
            close(fd)
            throw KVMError(.readStats)
        }
        let descriptorSize = MemoryLayout<kvm_stats_desc>.size + Int(header.name_size)
        var table = [UInt8](repeating: 0, count: descriptorSize * Int(header.num_desc))
        let expected = table.count
        let got = table.withUnsafeMutableBytes { pread(fd, $0.baseAddress, expected, off_t(header.desc_offset)) }
        guard got == expected else {
            close(fd)
            throw KVMError(.readStats)
        }
        var descriptors: [Descriptor] = []
        table.withUnsafeBytes { bytes in
            for index in 0..<Int(header.num_desc) {
                let base = index * descriptorSize
                let size = bytes.loadUnaligned(fromByteOffset: base + 6, as: UInt16.self)
                let offset = bytes.loadUnaligned(fromByteOffset: base + 8, as: UInt32.self)
                let nameBytes = bytes[(base + 16)..<(base + descriptorSize)].prefix { $0 != 0 }
                // Histograms (size > 1) are left out: the single counters are what we report.
                if size == 1 {
                    descriptors.append(
                        Descriptor(name: String(decoding: nameBytes, as: UTF8.self), dataOffset: Int(offset)))
                }
            }
        }
        self.descriptors = descriptors
        self.dataOffset = Int(header.data_offset)
    }

    deinit { close(fd) }

    /// Where the single-valued statistic `name` is, for reading it alone with `value(at:)`.
    public func location(of name: String) -> Int? {
        descriptors.first { $0.name == name }.map { dataOffset + $0.dataOffset }
    }

    /// One statistic's current value (a single pread, safe from any thread).
    public func value(at location: Int) throws -> UInt64 {
        var value: UInt64 = 0
        guard pread(fd, &value, 8, off_t(location)) == 8 else { throw KVMError(.readStats) }
        return value
    }

    /// Current values of every single-valued statistic, keyed by KVM's names.
    public func read() throws -> [String: UInt64] {
        var values: [String: UInt64] = [:]
        for descriptor in descriptors {
            var value: UInt64 = 0
            guard pread(fd, &value, 8, off_t(dataOffset + descriptor.dataOffset)) == 8 else {
                throw KVMError(.readStats)
            }
            values[descriptor.name] = value
        }
        return values
    }
}
