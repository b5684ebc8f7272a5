import ArgumentParser
import VirtioDevices

/// `--net tap=NAME[,mac=52:54:00:12:34:56][,queues=N][,queue_size=N][,rss=on|off]`: a virtio-net
/// device on TAP NAME (opened, or created when absent) with N queue pairs, received flows steered
/// over them by their Toeplitz hash unless rss=off. cloud-hypervisor's `num_queues` counts receive
/// and transmit queues both, so it is accepted as twice `queues`.
enum NetArgument {
    static func parse(_ argument: String) throws -> NetDeviceConfiguration {
        var options = try DeviceOptionList(option: "--net", argument: argument)
        var configuration = NetDeviceConfiguration(tapName: "", mac: NetDevice.randomMAC())
        if let name = options.take("tap") {
            guard NetDevice.tapNameLengths.contains(name.utf8.count) else {
                throw options.error("a TAP name is at most \(NetDevice.tapNameLengths.upperBound) bytes")
            }
            configuration.tapName = name
        }
        if let text = options.take("mac") {
            guard let mac = parseMAC(text) else { throw options.error("mac '\(text)' is not a unicast MAC address") }
            configuration.mac = mac
        }
        let pairs = NetDevice.queuePairCounts
        let count = try options.take("queues", in: pairs)
        let queues = try options.take("num_queues", in: (2 * pairs.lowerBound)...(2 * pairs.upperBound))
        guard count == nil || queues == nil else {
            throw options.error("queues (pairs) and num_queues (queues) are the same option, given twice")
        }
        if let count { configuration.queuePairs = count }
        if let queues {
            guard queues % 2 == 0 else {
                throw options.error("num_queues counts each pair's two queues, so it is even")
            }
            configuration.queuePairs = queues / 2
        }
        if let size = try options.takeQueueSize() { configuration.queueSize = size }
        if let rss = try options.takeSwitch("rss") { configuration.receiveSideScaling = rss }
        try options.finish()
        guard !configuration.tapName.isEmpty else { throw options.error("tap=NAME is required") }
        return configuration
    }

    /// Six groups of two hex digits, and a unicast address (the group bit clear).
    static func parseMAC(_ text: String) -> [UInt8]? {
        let groups = text.split(separator: ":", omittingEmptySubsequences: false)
        guard groups.count == 6 else { return nil }
        // Two hex digits each: UInt8(_:radix:) alone would take "+6" or "-0".
        let bytes = groups.compactMap { group in
            group.count == 2 && group.allSatisfy(\.isHexDigit) ? UInt8(group, radix: 16) : nil
        }
        guard bytes.count == 6, bytes[0] & 1 == 0 else { return nil }
        return bytes
    }
}
