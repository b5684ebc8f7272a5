import ArgumentParser
import VirtioDevices

/// `--disk path=FILE[,readonly=on|off][,queues=N][,backend=file|null][,size=BYTES][,id=NAME]`,
/// cloud-hypervisor style. `size` is for the null backend, which has no file (K, M, G suffixes).
enum DiskArgument {
    static func parse(_ argument: String) throws -> BlockDeviceConfiguration {
        var configuration = BlockDeviceConfiguration(path: nil, id: "")
        var sawSize = false
        for pair in argument.split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[1].isEmpty else {
                throw ValidationError("--disk \(argument): '\(pair)' is not key=value")
            }
            switch parts[0] {
            case "path": configuration.path = parts[1]
            case "readonly":
                guard let value = ["on": true, "true": true, "off": false, "false": false][parts[1]] else {
                    throw ValidationError("--disk \(argument): readonly takes on or off")
                }
                configuration.readOnly = value
            case "queues":
                let counts = BlockDevice.queueCounts
                guard let count = Int(parts[1]), counts.contains(count) else {
                    throw ValidationError(
                        "--disk \(argument): queues takes \(counts.lowerBound) to \(counts.upperBound)")
                }
                configuration.queueCount = count
            case "backend":
                guard let backend = BlockDeviceConfiguration.Backend(rawValue: parts[1]) else {
                    throw ValidationError("--disk \(argument): backend takes file or null")
                }
                configuration.backend = backend
            case "size":
                guard let size = parseSize(parts[1]), size >= 512 else {
                    throw ValidationError("--disk \(argument): size '\(parts[1])' is not a size")
                }
                configuration.nullSizeInBytes = size
                sawSize = true
            case "id":
                guard parts[1].utf8.count <= 20 else {
                    throw ValidationError("--disk \(argument): id is at most 20 bytes")
                }
                configuration.id = parts[1]
            default:
                throw ValidationError("--disk \(argument): unknown key '\(parts[0])'")
            }
        }
        switch configuration.backend {
        case .file:
            guard configuration.path != nil else { throw ValidationError("--disk \(argument): path=FILE is required") }
            guard !sawSize else { throw ValidationError("--disk \(argument): size is only for backend=null") }
        case .null:
            guard configuration.path == nil else {
                throw ValidationError("--disk \(argument): backend=null takes no path")
            }
            guard sawSize else { throw ValidationError("--disk \(argument): backend=null needs size=BYTES") }
        }
        return configuration
    }

    static func parseSize(_ text: String) -> UInt64? {
        let multipliers: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
        if let last = text.last, let multiplier = multipliers[last] {
            return UInt64(text.dropLast()).flatMap {
                $0.multipliedReportingOverflow(by: multiplier).overflow ? nil : $0 * multiplier
            }
        }
        return UInt64(text)
    }
}
