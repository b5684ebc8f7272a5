import ArgumentParser
import VMM

/// The client side of the API: each subcommand is one request to a running
/// `hvctl run --api-socket PATH` and prints its reply (JSON, or the metrics' text).
struct APITarget: ParsableArguments {
    @Option(help: "The --api-socket of the running hvctl.")
    var socket: String

    @Option(help: "The VM to address, by its --config name (may be left out when one VM runs).")
    var vm: String?

    func request(_ method: String, _ path: String, body: [UInt8] = [], addressesVM: Bool = true) throws -> String {
        var target = path
        if addressesVM, let vm {
            guard !vm.isEmpty,
                vm.utf8.allSatisfy({ (33..<127).contains($0) && $0 != UInt8(ascii: "&") && $0 != UInt8(ascii: "#") })
            else { throw ValidationError("--vm \(vm): a VM name is printable ASCII without spaces, & or #") }
            target += "?vm=\(vm)"
        }
        return try apiRequest(method, target, body: body, socket: socket)
    }
}

/// One API request; a failure is one line naming the socket and the API's message.
func apiRequest(_ method: String, _ path: String, body: [UInt8] = [], socket: String) throws -> String {
    do {
        return try APIClient.request(method, path, body: body, socket: socket).text
    } catch let error as APIClientError {
        throw ValidationError("--socket \(error)")
    }
}

/// `hvctl info`: a VM's configuration as it runs and its state (running or paused).
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a running VM's configuration and state as JSON.")
    @OptionGroup var target: APITarget
    func run() throws { print(try target.request("GET", "/api/v1/vm.info")) }
}

/// `hvctl pause`: stops a VM's vCPUs and device queues; nothing in flight is lost.
struct Pause: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Pause a running VM (vCPUs and I/O stop).")
    @OptionGroup var target: APITarget
    func run() throws { _ = try target.request("PUT", "/api/v1/vm.pause") }
}

/// `hvctl resume`: restarts what `hvctl pause` stopped.
struct Resume: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Resume a paused VM.")
    @OptionGroup var target: APITarget
    func run() throws { _ = try target.request("PUT", "/api/v1/vm.resume") }
}

/// `hvctl shutdown`: ends a VM's run now (a hard stop), or with `--graceful` presses its power
/// button and stops it hard only if it has not powered off by the deadline. Returns at once;
/// hvctl exits when its last VM has ended.
struct Shutdown: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop a running VM: now (exit 'shutdown'), or with --graceful through its ACPI power button.")
    @OptionGroup var target: APITarget

    @Flag(help: "Press the guest's power button; stop it hard only if it has not powered off within --timeout.")
    var graceful = false

    @Option(
        help: """
            Seconds a --graceful shutdown waits for the guest's poweroff \
            (\(ShutdownRequest.timeoutRange.lowerBound) to \(ShutdownRequest.timeoutRange.upperBound), \
            default \(ShutdownRequest.defaultTimeoutSeconds)).
            """)
    var timeout: Int?

    func validate() throws {
        guard let timeout else { return }
        guard graceful else { throw ValidationError("--timeout \(timeout): only with --graceful") }
        let range = ShutdownRequest.timeoutRange
        guard range.contains(timeout) else {
            throw ValidationError("--timeout \(timeout): must be \(range.lowerBound) to \(range.upperBound)")
        }
    }

    func run() throws {
        guard graceful else {
            _ = try target.request("PUT", "/api/v1/vm.shutdown")
            return
        }
        let body = "{\"graceful\":true" + (timeout.map { ",\"timeoutSeconds\":\($0)" } ?? "") + "}"
        _ = try target.request("PUT", "/api/v1/vm.shutdown", body: Array(body.utf8))
    }
}

/// `hvctl power-button`: presses a VM's ACPI power button and returns.
struct PowerButton: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "power-button", abstract: "Press a running VM's ACPI power button.")
    @OptionGroup var target: APITarget
    func run() throws { _ = try target.request("PUT", "/api/v1/vm.power-button") }
}

/// `hvctl stats`: the live statistics document.
struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the live statistics of a running hvctl (per VM, device, queue and side core) as JSON.")
    @OptionGroup var target: APITarget
    func run() throws { print(try target.request("GET", "/api/v1/vm.counters", addressesVM: false)) }
}

/// `hvctl metrics`: the statistics in Prometheus' text format, as `GET /metrics` serves them.
struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the metrics of a running hvctl (Prometheus text format).")
    @OptionGroup var target: APITarget
    func run() throws { print(try target.request("GET", "/metrics", addressesVM: false), terminator: "") }
}
