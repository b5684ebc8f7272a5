/// A configuration value the VMM cannot use. It names the field as the configuration types call it
/// (`vcpuCount`, a disk's `queueCount`), never a command-line flag: a front end maps fields to its
/// own syntax (hvctl's `FlagNames`).
public struct ConfigurationError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Field: String, Sendable {
        case vcpuCount, memoryInBytes
        case diskQueueCount, diskQueueSize, diskPath
        case netQueuePairs, netQueueSize, netTAPName, netReceiveSideScaling
    }

    public let field: Field
    /// The value as given, when the problem is with it (nil: the field is missing or has no text form).
    public let value: String?
    public let problem: String

    public init(_ field: Field, value: String? = nil, _ problem: String) {
        self.field = field
        self.value = value
        self.problem = problem
    }

    public var description: String { "\(field.rawValue)\(value.map { " \($0)" } ?? ""): \(problem)" }
}
