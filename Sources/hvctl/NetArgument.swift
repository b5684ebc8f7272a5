import ArgumentParser
import VirtioDevices

/// `--net tap=NAME[,mac=52:54:00:12:34:56][,queues=N][,rss=on|off]`: a virtio-net device on TAP
/// NAME (opened, or created when absent) with N queue pairs, received flows steered over them by
/// their Toeplitz hash unless rss=off.
enum NetArgument {
    static func parse(_ argument: String) throws -> NetDeviceConfiguration {
        var configuration = NetDeviceConfiguration(tapName: "", mac: NetDevice.randomMAC())
        for pair in argument.split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[1].isEmpty else {
                throw ValidationError("--net \(argument): '\(pair)' is not key=value")
            }
            switch parts[0] {
            case "tap":
                guard NetDevice.tapNameLengths.contains(parts[1].utf8.count) else {
                    throw ValidationError(
                        "--net \(argument): a TAP name is at most \(NetDevice.tapNameLengths.upperBound) bytes")
                }
                configuration.tapName = parts[1]
            case "mac":
                let bytes = parts[1].split(separator: ":").compactMap { $0.count == 2 ? UInt8($0, radix: 16) : nil }
                guard bytes.count == 6, bytes[0] & 1 == 0 else {
                    throw ValidationError("--net \(argument): mac '\(parts[1])' is not a unicast MAC address")
                }
                configuration.mac = bytes
            case "queues":
                let counts = NetDevice.queuePairCounts
                guard let count = Int(parts[1]), counts.contains(count) else {
                    throw ValidationError(
                        "--net \(argument): queues takes \(counts.lowerBound) to \(counts.upperBound)")
                }
                configuration.queuePairs = count
            case "rss":
                guard let value = OnOff(rawValue: parts[1]) else {
                    throw ValidationError("--net \(argument): rss takes on or off")
                }
                configuration.receiveSideScaling = value == .on
            default:
                throw ValidationError("--net \(argument): unknown key '\(parts[0])'")
            }
        }
        guard !configuration.tapName.isEmpty else { throw ValidationError("--net \(argument): tap=NAME is required") }
        return configuration
    }
}
