import FoundationEssentials
import Glibc
import Hypervisor
import VirtioDevices

/// The API's endpoints over a runtime (the contract is docs/api.yaml). VM endpoints take
/// `?vm=NAME`, which may be left out when the runtime runs one VM.
public struct VMMAPI: Sendable {
    public static let apiVersion = "1"

    private let runtime: VMMRuntime
    private let version: String

    /// `version`: hvctl's, for ping.
    public init(runtime: VMMRuntime, version: String) {
        self.runtime = runtime
        self.version = version
    }

    /// Answers one request.
    public func respond(to request: HTTPRequest) -> HTTPResponse {
        let routes: [(String, String, (HTTPRequest) -> HTTPResponse)] = [
            ("GET", "/api/v1/vmm.ping", ping),
            ("GET", "/api/v1/vm.info", { vm(in: $0).map(info) ?? $0.missingVM(runtime) }),
            ("GET", "/api/v1/vm.counters", counters),
            ("PUT", "/api/v1/vm.pause", { vm(in: $0).map(pause) ?? $0.missingVM(runtime) }),
            ("PUT", "/api/v1/vm.resume", { vm(in: $0).map(resume) ?? $0.missingVM(runtime) }),
            ("PUT", "/api/v1/vm.shutdown", { vm(in: $0).map(shutdown) ?? $0.missingVM(runtime) }),
            ("PUT", "/api/v1/vmm.side-cores", sideCores),
            ("GET", "/metrics", metrics),
        ]
        let matching = routes.filter { $0.1 == request.path }
        guard !matching.isEmpty else {
            return .error(404, code: "not_found", "no endpoint \(request.path)")
        }
        guard let route = matching.first(where: { $0.0 == request.method }) else {
            var response = HTTPResponse.error(
                405, code: "method_not_allowed",
                "\(request.path) takes \(matching.map(\.0).joined(separator: ", ")), not \(request.method)")
            response.allow = matching.map(\.0)
            return response
        }
        return route.2(request)
    }

    /// The VM `?vm=` names, or the only one.
    private func vm(in request: HTTPRequest) -> VMInstance? {
        guard let name = request.queryValue("vm") else { return runtime.vms.count == 1 ? runtime.vms[0] : nil }
        return runtime.vms.first { $0.configuration.name == name }
    }

    private func ping(_ request: HTTPRequest) -> HTTPResponse {
        var features = ["virtio-blk", "virtio-net", "msix", "pause", "metrics"]
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
            return .error(409, code: "not_running", "vm \(vm.configuration.name) is not running: its vCPUs did not stop")
        }
        return .noContent
    }

    private func resume(_ vm: VMInstance) -> HTTPResponse {
        guard vm.isPaused else { return .error(409, code: "not_paused", "vm \(vm.configuration.name) is not paused") }
        vm.resume()
        return .noContent
    }

    /// A hard stop: the VM's run ends now (a paused VM too); its disks are closed in order as hvctl exits.
    private func shutdown(_ vm: VMInstance) -> HTTPResponse {
        vm.machine.requestExit(.shutDown)
        return .noContent
    }

    private struct SideCoreRequest: Decodable {
        let count: Int?
        let auto: Bool?
    }

    private func sideCores(_ request: HTTPRequest) -> HTTPResponse {
        guard let engine = runtime.sideCores else {
            return .error(409, code: "no_side_cores", "no side cores: hvctl runs with --io-mode notify")
        }
        let body: SideCoreRequest
        do {
            body = try JSONDecoder().decode(SideCoreRequest.self, from: Data(request.body))
        } catch {
            return .error(400, code: "bad_body", "the body must be {\"count\": N} or {\"auto\": true}")
        }
        switch (body.count, body.auto) {
        case (nil, true?):
            guard let coreManager = runtime.coreManager else {
                return .error(409, code: "no_iocm", "no I/O core manager: hvctl runs without --side-cores auto")
            }
            coreManager.setAutomatic(true)
            return .json(SideCoreReply(sideCores: nil, auto: true, moved: 0))
        case (let count?, nil), (let count?, false?):
            do {
                let moves = try engine.resize(to: count)
                // A count chosen by hand holds until `auto` is asked for again.
                runtime.coreManager?.setAutomatic(false)
                return .json(SideCoreReply(sideCores: count, auto: false, moved: moves))
            } catch {
                return .error(400, code: "bad_count", "count: \(error)")
            }
        default:
            return .error(400, code: "bad_body", "the body must be {\"count\": N} or {\"auto\": true}, not both")
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
                report, paused: Dictionary(uniqueKeysWithValues: runtime.vms.map { ($0.configuration.name, $0.isPaused) }))
            return HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: Array(text.utf8))
        } catch {
            return .error(500, code: "statistics_unavailable", "cannot read the statistics: \(error)")
        }
    }
}

extension HTTPRequest {
    /// The reply when `?vm=` names no VM of the runtime, or is missing with several.
    fileprivate func missingVM(_ runtime: VMMRuntime) -> HTTPResponse {
        let names = runtime.vms.map(\.configuration.name).joined(separator: ", ")
        if let name = queryValue("vm") {
            return .error(404, code: "unknown_vm", "vm=\(name): no such VM (VMs: \(names))")
        }
        return .error(400, code: "vm_required", "vm: several VMs run, name one with ?vm= (VMs: \(names))")
    }
}
