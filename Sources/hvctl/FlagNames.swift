import Hypervisor

/// hvctl's words for what the library's errors name: a configuration field becomes the flag or
/// option that sets it, and a boot error says which flag to change.
enum FlagNames {
    /// The flag, with `=` when it is an option inside a device argument.
    static func flag(for field: ConfigurationError.Field) -> (name: String, joinsValue: Bool) {
        switch field {
        case .vcpuCount: return ("--cpus", false)
        case .memoryInBytes: return ("--memory", false)
        case .diskQueueCount: return ("--disk queues", true)
        case .diskQueueSize: return ("--disk queue_size", true)
        case .diskPath: return ("--disk path", true)
        case .netQueuePairs: return ("--net queues", true)
        case .netQueueSize: return ("--net queue_size", true)
        case .netTAPName: return ("--net tap", true)
        case .netReceiveSideScaling: return ("--net rss", true)
        }
    }

    static func message(for error: ConfigurationError) -> String {
        let (name, joinsValue) = flag(for: error.field)
        var value = error.value
        // The library counts bytes; --memory is in MiB.
        if error.field == .memoryInBytes, let bytes = value.flatMap({ UInt64($0) }) { value = "\(bytes >> 20)" }
        guard let value else { return "\(name): \(error.problem)" }
        return "\(name)\(joinsValue ? "=" : " ")\(value): \(error.problem)"
    }

    static func message(for error: BootError) -> String {
        switch error {
        case .kernelDoesNotFit, .initrdDoesNotFit: return "\(error.description); raise --memory"
        case .commandLineTooLong(let length, let limit):
            return "--cmdline is \(length) bytes; this kernel accepts at most \(limit)"
        default: return error.description
        }
    }
}
