import Hypervisor
import Synchronization
import VirtioDevices

/// A VM of a run that could not be built, and why (a `ConfigurationError`, a `BootError`, a
/// device's error or KVM's).
public struct VMBuildError: Error {
    public enum Stage: Sendable { case machine, devices }
    public let vm: String
    public let stage: Stage
    public let underlying: Error
}

/// A run of one or more VMs sharing one I/O engine: built from validated configurations,
/// run to their end, then taken down in order. The CLI parses and validates, builds one,
/// calls `run`, and maps the exits to its status; signals, the console and the control socket
/// stay the caller's, and reach the run through `stop` and `statistics`.
///
/// Order: the engine (side cores start idle) and the CPU placement first, then each VM's machine
/// and devices, then the I/O core manager; `finish` stops devices before the core manager and
/// the side cores, so nothing polls a queue whose device is gone.
public final class VMMRuntime: Sendable {
    public let vms: [VMInstance]
    public let placement: CPUPlacement
    /// The side cores, in poll and hybrid modes.
    public let sideCores: SideCoreEngine?
    /// With a core-count policy: the I/O core manager resizing `sideCores`.
    public let coreManager: IOCoreManager?
    private let io: IOConfiguration
    private let namedVMs: Bool
    /// When the runtime was built (CLOCK_MONOTONIC), for statistics' uptime.
    private let started = MonotonicClock.now()

    /// `consoleOutput` gives the function each VM's console bytes go to. `namedVMs` (several VMs,
    /// or VMs the user named): device names carry their VM's name, and statistics list the VMs
    /// by name; otherwise the one VM's statistics are at the top level.
    public init(
        vms configurations: [VMConfiguration], io: IOConfiguration, kvm: KVM, namedVMs: Bool,
        consoleOutput: (VMConfiguration) throws -> @Sendable (UInt8) -> Void
    ) throws {
        self.io = io
        self.namedVMs = namedVMs || configurations.count > 1
        // Built now, with the VMs, not by the first statistics request: see its comment.
        _ = LatencySummary.emptyHistogram
        placement = CPUPlacement(
            sideCores: io.sideCores, vcpuCount: configurations.reduce(0) { $0 + $1.machine.vcpuCount })
        let engine: QueueEngine
        if var configuration = io.sideCores {
            if !placement.sideCoresHaveTheirOwnCPUs { configuration.pollWindowCeiling = nil }
            let sideCores = try SideCoreEngine(configuration: configuration, cpus: placement.sideCoreCPUs)
            self.sideCores = sideCores
            engine = sideCores
        } else {
            sideCores = nil
            engine = NotifyEngine()
        }
        var vms: [VMInstance] = []
        do {
            for var configuration in configurations {
                configuration.machine.vcpuHostCPUs = placement.vcpuCPUs
                configuration.machine.interruptRedirection = io.interruptRedirection
                vms.append(
                    try VMInstance(
                        configuration: configuration, kvm: kvm, engine: engine,
                        consoleOutput: try consoleOutput(configuration),
                        namePrefix: self.namedVMs ? "\(configuration.name)." : ""))
            }
            self.vms = vms
            if let policy = io.coreCountPolicy, let sideCores {
                coreManager = try IOCoreManager(engine: sideCores, policy: policy, onResize: io.onResize)
            } else {
                coreManager = nil
            }
        } catch {
            // Nothing ran yet (queues attach at the guest's DRIVER_OK): only the side cores' threads.
            sideCores?.stop()
            throw error
        }
    }

    /// Runs every VM to its end, each on its own thread when there are several; their exits in order.
    public func run() throws -> [MachineExit] {
        if vms.count == 1 { return [try vms[0].machine.run()] }
        let results = Lock<[Int: MachineExit]>([:])
        var threads: [HostThread] = []
        for (index, vm) in vms.enumerated() {
            do {
                threads.append(
                    try HostThread(name: "vm-\(vm.configuration.name)") {
                        let exit: MachineExit
                        do { exit = try vm.machine.run() } catch { exit = .failed("\(error)") }
                        results.withLock { $0[index] = exit }
                    })
            } catch {
                // The VMs already started are stopped and joined: none runs on unowned.
                stop(.failed("vm \(vm.configuration.name) could not start: \(error)"))
                for thread in threads { thread.join() }
                throw error
            }
        }
        for thread in threads { thread.join() }
        return results.withLock { results in vms.indices.map { results[$0] ?? .failed("did not run") } }
    }

    /// Ends every VM's run with `exit` (a VM that already ended keeps its own).
    public func stop(_ exit: MachineExit) {
        for vm in vms { vm.machine.requestExit(exit) }
    }

    /// The statistics while the VMs run (their exit reads "running").
    public func statistics() throws -> StatisticsReport {
        report(vms: try vms.map { try $0.liveReport() }, sideCores: sideCores.map(SideCoreReport.collect) ?? [])
    }

    /// The I/O mode's name: notify, poll or hybrid.
    public var ioModeName: String { io.modeName }

    /// After `run`: stops queue processing of every VM (requests in flight finish), then the I/O
    /// core manager and the side cores, and returns the final statistics.
    public func finish(exits: [MachineExit]) throws -> StatisticsReport {
        let reports: [VMReport]
        do {
            reports = try zip(vms, exits).map { try $0.finish(exit: $1) }
        } catch {
            // The threads go whatever happened to the VMs' reports: no side core spins on.
            coreManager?.stop()
            sideCores?.stop()
            throw error
        }
        coreManager?.stop()
        // Read while the cores still run: thread CPU clocks vanish with their threads.
        let sideCoreReports = sideCores.map(SideCoreReport.collect) ?? []
        sideCores?.stop()
        return report(vms: reports, sideCores: sideCoreReports)
    }

    private func report(vms: [VMReport], sideCores: [SideCoreReport]) -> StatisticsReport {
        StatisticsReport(
            vms: vms, ioMode: io.modeName, sideCores: sideCores, singleVMAtTopLevel: !namedVMs,
            uptimeSeconds: Double(MonotonicClock.now() - started) / 1e9,
            iocm: coreManager.map { .init(automatic: $0.isAutomatic, resizes: $0.resizes.count) })
    }
}
