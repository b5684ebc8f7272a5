import CKVM
import Glibc
import Hypervisor

/// How one `--net` is backed.
public struct NetDeviceConfiguration: Equatable, Sendable {
    public var tapName: String
    public var mac: [UInt8]
    public var queuePairs = 1
    /// The ring size offered for each receive and transmit queue.
    public var queueSize = QueueSizeLimit.defaultSize
    /// With several queue pairs: steer received frames by the Toeplitz hash of their flow
    /// (`FlowSteeringProgram`); off leaves the choice to the TAP driver's own flow table.
    public var receiveSideScaling = true

    public init(tapName: String, mac: [UInt8]) {
        self.tapName = tapName
        self.mac = mac
    }
}

/// A failure of the TAP device once it is open, which no configuration field is to blame for.
public struct NetDeviceError: Error, CustomStringConvertible, Equatable {
    public let description: String
}

/// virtio-net on a multi-queue TAP: one handler per queue pair, the virtio_net_hdr passed through
/// (checksum and TSO offloads both ways), mergeable receive buffers, and a control queue for MQ.
/// With several pairs the TAP steers each flow to one queue by its Toeplitz hash (virtual RSS).
public final class NetDevice: VirtioDevice, @unchecked Sendable {
    // @unchecked: `transportNeedsReset` is set once, by the transport that owns the device, before
    // any queue runs.
    static let featureChecksum: UInt64 = 1 << 0
    static let featureGuestChecksum: UInt64 = 1 << 1
    static let featureMAC: UInt64 = 1 << 5
    static let featureGuestTSO4: UInt64 = 1 << 7
    static let featureGuestTSO6: UInt64 = 1 << 8
    static let featureHostTSO4: UInt64 = 1 << 11
    static let featureHostTSO6: UInt64 = 1 << 12
    static let featureMergeableBuffers: UInt64 = 1 << 15
    static let featureStatus: UInt64 = 1 << 16
    static let featureControlQueue: UInt64 = 1 << 17
    static let featureMultiQueue: UInt64 = 1 << 22
    static let headerSize = 12

    public let configuration: NetDeviceConfiguration
    public let name: String
    let tapFDs: [Int32]
    /// The TAP's flow-steering program (several queue pairs with receive-side scaling).
    let steering: FlowSteeringProgram?
    /// Set by the transport: puts the device in DEVICE_NEEDS_RESET (a broken driver).
    public var transportNeedsReset: ((String) -> Void)?
    /// Counters per virtqueue (rx0, tx0, rx1, tx1, ..., control), kept across resets.
    public let queueStatistics: [QueueStatistics]

    public let deviceType: UInt16 = 1
    public let pciClassCode: UInt32 = 0x02_00_00
    public var queueMaxSizes: [UInt16] {
        Array(repeating: configuration.queueSize, count: 2 * configuration.queuePairs) + [64]
    }

    public var deviceFeatures: UInt64 {
        var features =
            Self.featureChecksum | Self.featureGuestChecksum | Self.featureMAC | Self.featureGuestTSO4
            | Self.featureGuestTSO6 | Self.featureHostTSO4 | Self.featureHostTSO6 | Self.featureMergeableBuffers
            | Self.featureStatus | Self.featureControlQueue
        if configuration.queuePairs > 1 { features |= Self.featureMultiQueue }
        return features
    }

    /// How many queue pairs a device may have.
    public static let queuePairCounts = 1...16
    /// TAP name lengths in bytes: the kernel keeps IFNAMSIZ - 1, so a longer name would open another TAP.
    public static let tapNameLengths = 1...15

    public init(configuration: NetDeviceConfiguration, name: String) throws {
        guard Self.queuePairCounts.contains(configuration.queuePairs) else {
            throw ConfigurationError(
                .netQueuePairs, value: "\(configuration.queuePairs)",
                "must be \(Self.queuePairCounts.lowerBound) to \(Self.queuePairCounts.upperBound)")
        }
        try QueueSizeLimit.check(configuration.queueSize, field: .netQueueSize)
        guard Self.tapNameLengths.contains(configuration.tapName.utf8.count) else {
            throw ConfigurationError(
                .netTAPName, value: configuration.tapName,
                "must be \(Self.tapNameLengths.lowerBound) to \(Self.tapNameLengths.upperBound) bytes")
        }
        var fds: [Int32] = []
        for _ in 0..<configuration.queuePairs {
            let fd = configuration.tapName.withCString { ckvm_tap_open($0) }
            guard fd >= 0 else {
                let reason = String(cString: strerror(errno))
                for fd in fds { close(fd) }
                throw ConfigurationError(
                    .netTAPName, value: configuration.tapName, "cannot open the TAP device: \(reason)")
            }
            fds.append(fd)
        }
        do {
            if configuration.queuePairs > 1 && configuration.receiveSideScaling {
                steering = try FlowSteeringProgram(queues: configuration.queuePairs)
                try steering?.attach(toTAP: fds[0])
            } else {
                steering = nil
            }
        } catch {
            for fd in fds { close(fd) }
            throw ConfigurationError(
                .netReceiveSideScaling, value: "on",
                "TAP \(configuration.tapName): \(error) (without it the TAP driver steers flows)")
        }
        self.configuration = configuration
        self.name = name
        self.tapFDs = fds
        queueStatistics = (0...(2 * configuration.queuePairs)).map { _ in QueueStatistics() }
    }

    deinit {
        for fd in tapFDs { close(fd) }
    }

    public func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        // mac[6], status (LINK_UP), max_virtqueue_pairs
        let config =
            configuration.mac + LittleEndian.bytes(UInt16(1)) + LittleEndian.bytes(UInt16(configuration.queuePairs))
        for index in 0..<data.count { data[index] = offset + index < config.count ? config[offset + index] : 0 }
    }

    public func writeConfiguration(offset: Int, data: UnsafeRawBufferPointer) {}

    public func activate(memory: GuestMemory, features: UInt64, queues: [QueueContext]) throws -> [QueueHandler] {
        let byIndex = Dictionary(uniqueKeysWithValues: queues.map { ($0.index, $0) })
        // The TAP must hand over only the offloads the driver accepted; if it cannot be told,
        // frames the driver cannot parse would follow, so activation fails (DEVICE_NEEDS_RESET).
        for fd in tapFDs {
            let result = ckvm_tap_set_offload(
                fd, features & Self.featureGuestChecksum != 0 ? 1 : 0,
                features & Self.featureGuestTSO4 != 0 ? 1 : 0, features & Self.featureGuestTSO6 != 0 ? 1 : 0)
            guard result == 0 else {
                throw NetDeviceError(
                    description: "\(name): TUNSETOFFLOAD on the TAP failed: \(String(cString: strerror(errno)))")
            }
        }
        var handlers: [QueueHandler] = []
        for pair in 0..<configuration.queuePairs {
            guard let rx = byIndex[2 * pair], let tx = byIndex[2 * pair + 1] else { continue }
            handlers.append(
                NetQueuePairHandler(
                    name: "\(name)-q\(pair)", tapFD: tapFDs[pair], rx: rx, tx: tx, memory: memory,
                    mergeable: features & Self.featureMergeableBuffers != 0,
                    rxStatistics: queueStatistics[2 * pair], txStatistics: queueStatistics[2 * pair + 1],
                    onBrokenQueue: { [weak self] reason in
                        self?.transportNeedsReset?("\(self?.name ?? "net"): \(reason)")
                    }))
        }
        if let control = byIndex[2 * configuration.queuePairs] {
            handlers.append(
                NetControlHandler(
                    name: "\(name)-ctl", context: control, memory: memory, queuePairs: configuration.queuePairs,
                    statistics: queueStatistics[2 * configuration.queuePairs],
                    onBrokenQueue: { [weak self] reason in
                        self?.transportNeedsReset?("\(self?.name ?? "net"): \(reason)")
                    }))
        }
        return handlers
    }

    /// Nothing is in flight once the engine let go: transmits and receives finish within a poll.
    public func reset() {}

    /// A locally administered unicast MAC address, random per run.
    public static func randomMAC() -> [UInt8] {
        [0x52, 0x54, 0x00] + (0..<3).map { _ in UInt8.random(in: 0...255) }
    }
}
