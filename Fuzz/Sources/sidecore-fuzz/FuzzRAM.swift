import Hypervisor
@testable import VirtioDevices

/// Guest RAM for the ring targets: 64 KiB mapped once per process and rewritten from each input,
/// with one queue's rings at fixed places (descriptors, available, used) and payload behind them.
/// A second queue (for queue pairs) has its rings at `secondQueue`.
final class FuzzRAM {
    nonisolated(unsafe) static let shared = FuzzRAM()
    static let size: UInt64 = 0x10000
    static let descriptors: UInt64 = 0x0000
    static let available: UInt64 = 0x1000
    static let used: UInt64 = 0x1800
    static let secondQueue: UInt64 = 0x2000
    static let payload: UInt64 = 0x4000

    let memory: GuestMemory

    private init() {
        memory = try! GuestMemory(ranges: [(0, FuzzRAM.size)])
    }

    /// Zeroes RAM, then writes the rings of a `size`-entry queue at `base` and the payload from
    /// the input: the descriptor table (16 bytes each) and the available ring are raw input bytes.
    func load(queueSize size: UInt16, from input: inout FuzzInput, payload: Bool = true) {
        try! memory.zero(at: 0, length: FuzzRAM.size)
        loadRings(queueSize: size, base: 0, from: &input)
        if payload { try! memory.write(input.take(Int(FuzzRAM.size - FuzzRAM.payload)), at: FuzzRAM.payload) }
    }

    /// The rings of a queue at `base` (descriptors), `base + 0x1000` (available), `base + 0x1800` (used).
    func loadRings(queueSize size: UInt16, base: UInt64, from input: inout FuzzInput) {
        try! memory.write(input.take(16 * Int(size)), at: base + FuzzRAM.descriptors)
        try! memory.write(input.take(6 + 2 * Int(size)), at: base + FuzzRAM.available)
    }

    func queue(size: UInt16, base: UInt64 = 0, eventIndex: Bool) -> Virtqueue {
        try! Virtqueue(
            memory: memory, size: size, descriptorTable: base + FuzzRAM.descriptors,
            availableRing: base + FuzzRAM.available, usedRing: base + FuzzRAM.used, eventIndex: eventIndex)
    }

    func usedIndex(base: UInt64 = 0) -> UInt16 { try! memory.load(UInt16.self, at: base + FuzzRAM.used + 2) }

    /// The driver publishes more chains: its available index moves by `by`.
    func advanceAvailable(by count: UInt16, base: UInt64 = 0) {
        let index = try! memory.load(UInt16.self, at: base + FuzzRAM.available + 2)
        try! memory.store(index &+ count, at: base + FuzzRAM.available + 2)
    }

    /// A queue size from one input byte: a power of two from 1 to 256.
    static func queueSize(_ byte: UInt8) -> UInt16 { UInt16(1) << UInt16(byte % 9) }
}
