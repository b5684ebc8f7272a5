import CKVM

/// One exit to userspace, as the vCPU's run loop saw it.
public struct RecordedExit: Equatable, Sendable {
    /// KVM's exit reason (`KVM_EXIT_*`).
    public var reason: UInt32
    /// The port or guest-physical address of a port I/O or MMIO exit, else 0.
    public var address: UInt64 = 0
    /// Bytes per access of a port I/O or MMIO exit, else 0.
    public var size: UInt8 = 0
    public var isWrite = false
    /// What was written (the first access of a string I/O), little-endian; 0 for reads.
    public var value: UInt64 = 0
    /// CLOCK_MONOTONIC when the exit was handled, in nanoseconds.
    public var time: UInt64

    public init(
        reason: UInt32, address: UInt64 = 0, size: UInt8 = 0, isWrite: Bool = false, value: UInt64 = 0, time: UInt64
    ) {
        self.reason = reason
        self.address = address
        self.size = size
        self.isWrite = isWrite
        self.value = value
        self.time = time
    }
}

/// The last `capacity` exits of one vCPU, kept so that a triple fault or a hang can be
/// diagnosed after the fact (printed when a vCPU triple-faults or hvctl is stopped by a signal).
/// Exits KVM handles in the kernel never reach userspace and are not here; KVM's statistics count them.
public struct ExitHistory: Sendable {
    public static let defaultCapacity = 32
    public let capacity: Int
    private var ring: [RecordedExit] = []
    private var next = 0
    /// Every exit recorded, including those the ring no longer holds.
    public private(set) var total: UInt64 = 0

    public init(capacity: Int = ExitHistory.defaultCapacity) {
        precondition(capacity > 0)
        self.capacity = capacity
        ring.reserveCapacity(capacity)
    }

    public mutating func record(_ exit: RecordedExit) {
        if ring.count < capacity {
            ring.append(exit)
        } else {
            ring[next] = exit
        }
        next = (next + 1) % capacity
        total &+= 1
    }

    /// The exits held, oldest first.
    public var entries: [RecordedExit] {
        ring.count < capacity ? ring : Array(ring[next...] + ring[..<next])
    }

    /// One line per exit, oldest first, each with its age at `now` (nanoseconds) in microseconds.
    public func describe(now: UInt64) -> [String] {
        entries.map { exit in
            let when = "-\(now >= exit.time ? (now - exit.time) / 1000 : 0) us"
            switch Int32(bitPattern: exit.reason) {
            case KVM_EXIT_IO:
                let direction = exit.isWrite ? "out" : "in"
                let value = exit.isWrite ? " = 0x" + String(exit.value, radix: 16) : ""
                return "\(when) io \(direction) port 0x\(String(exit.address, radix: 16)) size \(exit.size)\(value)"
            case KVM_EXIT_MMIO:
                let direction = exit.isWrite ? "write" : "read"
                let value = exit.isWrite ? " = 0x" + String(exit.value, radix: 16) : ""
                return "\(when) mmio \(direction) 0x\(String(exit.address, radix: 16)) size \(exit.size)\(value)"
            case KVM_EXIT_INTR:
                return "\(when) interrupted (a signal kicked the vCPU)"
            case KVM_EXIT_SHUTDOWN:
                return "\(when) shutdown (triple fault)"
            case let reason:
                return "\(when) exit reason \(reason)"
            }
        }
    }
}
