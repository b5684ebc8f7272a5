import ArgumentParser
import VirtioDevices

/// `--disk path=FILE[,readonly=on|off][,queues=N][,queue_size=N][,backend=file|null][,size=BYTES][,id=NAME]`,
/// cloud-hypervisor style (its `num_queues` is accepted for `queues`). `size` is for the null
/// backend, which has no file (K, M, G suffixes).
enum DiskArgument {
    static func parse(_ argument: String) throws -> BlockDeviceConfiguration {
        var options = try DeviceOptionList(option: "--disk", argument: argument)
        var configuration = BlockDeviceConfiguration(path: options.take("path"), id: "")
        if let readOnly = try options.takeSwitch("readonly") { configuration.readOnly = readOnly }
        if let count = try options.take("queues", alias: "num_queues", in: BlockDevice.queueCounts) {
            configuration.queueCount = count
        }
        if let size = try options.takeQueueSize() { configuration.queueSize = size }
        if let text = options.take("backend") {
            guard let backend = BlockDeviceConfiguration.Backend(rawValue: text) else {
                throw options.error("backend takes file or null")
            }
            configuration.backend = backend
        }
        let size = options.take("size")
        if let size {
            guard let bytes = parseSize(size), bytes >= 512 else { throw options.error("size '\(size)' is not a size") }
            // The device counts whole 512-byte sectors: a remainder would silently vanish.
            guard bytes % 512 == 0 else { throw options.error("size '\(size)' is not a multiple of 512 bytes") }
            configuration.nullSizeInBytes = bytes
        }
        if let id = options.take("id") {
            guard id.utf8.count <= 20 else { throw options.error("id is at most 20 bytes") }
            configuration.id = id
        }
        try options.finish()
        switch configuration.backend {
        case .file:
            guard configuration.path != nil else { throw options.error("path=FILE is required") }
            guard size == nil else { throw options.error("size is only for backend=null") }
        case .null:
            guard configuration.path == nil else { throw options.error("backend=null takes no path") }
            guard size != nil else { throw options.error("backend=null needs size=BYTES") }
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
