import FoundationEssentials
import Glibc
import Hypervisor
import Logging
import VirtioDevices

/// The API's endpoints over a runtime (the contract is docs/api.yaml). VM endpoints take
/// `?vm=NAME`, which may be left out when the runtime runs one VM.
public struct VMMAPI: Sendable {
    public static let apiVersion = "1"
    /// What the API changed (pause, resume, shutdown, side cores) at notice, each request at debug.
    private static let logger = Logger(label: "sidecore.api")

    private let runtime: VMMRuntime
    private let version: String

    /// `version`: hvctl's, for ping.
    public init(runtime: VMMRuntime, version: String) {
        self.runtime = runtime
        self.version = version
    }

    private typealias Handler = @Sendable (VMMAPI, HTTPRequest) -> HTTPResponse

    private static let routes: [(method: String, path: String, handler: Handler)] = [
        ("GET", "/api/v1/vmm.ping", { $0.ping($1) }),
        ("GET", "/api/v1/vm.info", { api, request in api.withVM(request, api.info) }),
        ("GET", "/api/v1/vm.counters", { $0.counters($1) }),
        ("PUT", "/api/v1/vm.pause", { api, request in api.withVM(request, api.pause) }),
        ("PUT", "/api/v1/vm.resume", { api, request in api.withVM(request, api.resume) }),
        ("PUT", "/api/v1/vm.shutdown", { api, request in api.withVM(request) { api.shutdown($0, request) } }),
        ("PUT", "/api/v1/vm.power-button", { api, request in api.withVM(request, api.powerButton) }),
        ("PUT", "/api/v1/vmm.side-cores", { $0.sideCores($1) }),
        ("GET", "/metrics", { $0.metrics($1) }),
    ]

    /// Every endpoint as "METHOD path" (docs/api.yaml must list the same).
    public static var endpoints: [String] { routes.map { "\($0.method) \($0.path)" } }

    /// Answers one request.
    public func respond(to request: HTTPRequest) -> HTTPResponse {
        let matching = Self.routes.filter { $0.path == request.path }
        guard !matching.isEmpty else {
            return .error(404, code: "not_found", "no endpoint \(request.path)")
        }
        guard let route = matching.first(where: { $0.method == request.method }) else {
            var response = HTTPResponse.error(
                405, code: "method_not_allowed",
                "\(request.path) takes \(matching.map(\.method).joined(separator: ", ")), not \(request.method)")
            response.allow = matching.map(\.method)
            return response
        }
        let response = route.handler(self, request)
        Self.logger.debug(
            "api request",
            metadata: ["method": "\(request.method)", "path": "\(request.path)", "status": "\(response.status)"])
        return response
    }

    /// `body` with the VM the request names, or the error saying it names none.
    private func withVM(_ request: HTTPRequest, _ body: (VMInstance) -> HTTPResponse) -> HTTPResponse {
        if let vm = vm(in: request) { return body(vm) }
        let names = runtime.vms.map(\.configuration.name).joined(separator: ", ")
        if let name = request.queryValue("vm") {
            return .error(404, code: "unknown_vm", "vm=\(name): no such VM (VMs: \(names))")
        }
        return .error(400, code: "vm_required", "vm: several VMs run, name one with ?vm= (VMs: \(names))")
    }

    /// The VM `?vm=` names, or the only one.
    private func vm(in request: HTTPRequest) -> VMInstance? {
        guard let name = request.queryValue("vm") else { return runtime.vms.count == 1 ? runtime.vms[0] : nil }
        return runtime.vms.first { $0.configuration.name == name }
    }

    private func ping(_ request: HTTPRequest) -> HTTPResponse {
        var features = ["virtio-blk", "virtio-net", "msix", "pause", "power-button", "metrics"]
        if runtime.sideCores != nil { features.append("side-cores") }
        if runtime.coreManager != nil { features.append("iocm") }
        return .json(
            PingReply(
                version: version, apiVersion: Self.apiVersion, pid: getpid(), features: features,
                vms: runtime.vms.map(\.configuration.name)))
    }

    private func info(_ vm: VMInstance) -> HTTPResponse { .json(VMInfo(vm, ioMode: runtime.ioModeName)) }

    private func counters(_ request: HTTPRequest) -> HTTPResponse {
        do {
            return .json(try runtime.statistics())
        } catch {
            return .error(500, code: "statistics_unavailable", "cannot read the statistics: \(error)")
        }
    }

    private func pause(_ vm: VMInstance) -> HTTPResponse {
        guard !vm.isPaused else { return .error(409, code: "already_paused", "vm \(vm.configuration.name) is paused") }
        guard vm.pause() else {
            return .error(
                409, code: "not_running", "vm \(vm.configuration.name) is not running: its vCPUs did not stop")
        }
        Self.logger.notice("vm paused", metadata: ["vm": "\(vm.configuration.name)"])
        return .noContent
    }

    private func resume(_ vm: VMInstance) -> HTTPResponse {
        guard vm.isPaused else { return .error(409, code: "not_paused", "vm \(vm.configuration.name) is not paused") }
        vm.resume()
        Self.logger.notice("vm resumed", metadata: ["vm": "\(vm.configuration.name)"])
        return .noContent
    }

    /// No body: a hard stop, the VM's run ends now (a paused VM too); its disks are closed in
    /// order as hvctl exits. `{"graceful": true}`: the power button, then a hard stop if the guest
    /// has not powered off by the deadline.
    private func shutdown(_ vm: VMInstance, _ request: HTTPRequest) -> HTTPResponse {
        let body: ShutdownRequest
        do {
            body = try APIRequestBody.decode(ShutdownRequest.self, from: request.body)
        } catch {
            return .error(400, code: "bad_body", "\(error)")
        }
        let name = vm.configuration.name
        guard let timeout = body.gracefulTimeoutSeconds else {
            vm.machine.requestExit(.shutDown)
            Self.logger.notice("vm shutdown requested", metadata: ["vm": "\(name)"])
            return .noContent
        }
        if let failure = pressPowerButton(vm, { try vm.shutdownGracefully(timeoutSeconds: timeout) }) {
            return failure
        }
        Self.logger.notice("vm graceful shutdown requested", metadata: ["vm": "\(name)", "timeout": "\(timeout)s"])
        return .json(ShutdownReply(graceful: true, timeoutSeconds: timeout), status: 202)
    }

    private struct ShutdownReply: Encodable {
        let graceful: Bool
        let timeoutSeconds: Int
    }

    /// Presses the ACPI power button; what the guest does with it is its own affair.
    private func powerButton(_ vm: VMInstance) -> HTTPResponse {
        if let failure = pressPowerButton(vm, vm.machine.pressPowerButton) { return failure }
        Self.logger.notice("vm power button pressed", metadata: ["vm": "\(vm.configuration.name)"])
        return .noContent
    }

    /// Runs `press` (which presses the button) unless the VM cannot take it: a paused guest
    /// cannot answer the button, an ended one has none. The error reply, or nil once pressed.
    private func pressPowerButton(_ vm: VMInstance, _ press: () throws -> Void) -> HTTPResponse? {
        let name = vm.configuration.name
        if vm.machine.isEnding {
            return .error(409, code: "not_running", "vm \(name) is not running: its run has ended")
        }
        if vm.isPaused { return .error(409, code: "paused", "vm \(name) is paused: resume it first") }
        do {
            try press()
        } catch {
            return .error(500, code: "power_button_failed", "cannot press the power button of vm \(name): \(error)")
        }
        return nil
    }

    private func sideCores(_ request: HTTPRequest) -> HTTPResponse {
        guard let engine = runtime.sideCores else {
            return .error(409, code: "no_side_cores", "no side cores: hvctl runs with --io-mode notify")
        }
        let body: SideCoreRequest
        do {
            body = try APIRequestBody.decode(SideCoreRequest.self, from: request.body)
        } catch {
            return .error(400, code: "bad_body", "\(error)")
        }
        switch body {
        case .automatic:
            guard let coreManager = runtime.coreManager else {
                return .error(409, code: "no_iocm", "no I/O core manager: hvctl runs without --side-cores auto")
            }
            coreManager.setAutomatic(true)
            Self.logger.notice("side cores: the I/O core manager decides")
            return .json(SideCoreReply(sideCores: nil, auto: true, moved: 0))
        case .count(let count):
            do {
                let moves = try engine.resize(to: count)
                // A count chosen by hand holds until `auto` is asked for again.
                runtime.coreManager?.setAutomatic(false)
                Self.logger.notice("side cores set", metadata: ["count": "\(count)", "moved": "\(moves)"])
                return .json(SideCoreReply(sideCores: count, auto: false, moved: moves))
            } catch {
                // Valid JSON, but beyond what this run was started with (--side-cores-max): a conflict.
                return .error(409, code: "bad_count", "count: \(error)")
            }
        }
    }

    private struct SideCoreReply: Encodable {
        let sideCores: Int?
        let auto: Bool
        let moved: Int
    }

    private func metrics(_ request: HTTPRequest) -> HTTPResponse {
        do {
            let report = try runtime.statistics()
            let text = PrometheusExposition.render(
                report,
                paused: Dictionary(uniqueKeysWithValues: runtime.vms.map { ($0.configuration.name, $0.isPaused) }))
            return HTTPResponse(
                status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: Array(text.utf8))
        } catch {
            return .error(500, code: "statistics_unavailable", "cannot read the statistics: \(error)")
        }
    }
}
