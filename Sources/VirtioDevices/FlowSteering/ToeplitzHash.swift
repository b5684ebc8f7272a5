/// The Toeplitz hash of receive-side scaling (Microsoft's RSS specification, also virtio-net's
/// VIRTIO_NET_F_RSS): each set bit of the input, counted from the most significant bit of its
/// first byte, XORs in the 32 bits of the key that start at the same bit position.
public struct ToeplitzHash: Sendable {
    /// The specification's default key, as most NIC drivers and QEMU use it.
    public static let defaultKey: [UInt8] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
        0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
        0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ]
    /// Entries of the indirection table that maps a hash to a queue (the spec's 128).
    public static let indirectionEntries: UInt32 = 128

    public let key: [UInt8]

    /// `key` must be 4 bytes longer than the longest input (40 bytes covers IPv6 with ports).
    public init(key: [UInt8] = ToeplitzHash.defaultKey) {
        self.key = key
    }

    /// The longest input this key can hash, in bytes.
    public var maximumInputLength: Int { key.count - 4 }

    /// The 32 key bits starting at bit `position` (0 is the first key byte's top bit).
    public func window(at position: Int) -> UInt32 {
        let byte = position / 8, shift = position % 8
        var bits: UInt64 = 0
        for index in 0..<5 { bits = bits << 8 | UInt64(byte + index < key.count ? key[byte + index] : 0) }
        return UInt32(truncatingIfNeeded: bits >> (8 - shift))
    }

    public func hash(_ input: [UInt8]) -> UInt32 {
        precondition(input.count <= maximumInputLength, "Toeplitz input longer than the key allows")
        var result: UInt32 = 0
        for (index, byte) in input.enumerated() {
            for bit in 0..<8 where byte & (0x80 >> bit) != 0 {
                result ^= window(at: index * 8 + bit)
            }
        }
        return result
    }

    /// The hash input of a flow: source and destination address, then (TCP or UDP) source and
    /// destination port, in network byte order.
    public static func flowInput(source: [UInt8], destination: [UInt8], ports: (source: UInt16, destination: UInt16)?)
        -> [UInt8]
    {
        var input = source + destination
        if let ports {
            input += [
                UInt8(ports.source >> 8), UInt8(ports.source & 0xff), UInt8(ports.destination >> 8),
                UInt8(ports.destination & 0xff),
            ]
        }
        return input
    }

    /// The receive queue of a hash with the default indirection table (entry i is queue i mod n).
    public static func queue(of hash: UInt32, queues: Int) -> Int {
        Int(hash % indirectionEntries) % queues
    }
}
