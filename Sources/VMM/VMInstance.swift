import Dispatch
import Hypervisor
import Logging
import VirtioDevices

/// One VM of a run: its machine and virtio devices, built from its configuration, with its
/// queues on the run's shared engine.
public final class VMInstance: Sendable {
    public let configuration: VMConfiguration
    public let machine: Machine
    public let devices: VirtioDeviceSet
    /// Whether a graceful shutdown's deadline is set (one at a time per VM).
    private let shutdownDeadlineSet = Lock(false)
    private static let logger = Logger(label: "sidecore.vm")

    /// `consoleOutput` receives every byte the guest writes to its serial console. `namePrefix`
    /// tells devices of different VMs apart on shared side cores (e.g. "a.").
    init(
        configuration: VMConfiguration, kvm: KVM, engine: QueueEngine,
        consoleOutput: @escaping @Sendable (UInt8) -> Void,
        namePrefix: String
    ) throws {
        self.configuration = configuration
        do {
            machine = try Machine(configuration: configuration.machine, kvm: kvm, consoleOutput: consoleOutput)
        } catch {
            throw VMBuildError(vm: configuration.name, stage: .machine, underlying: error)
        }
        do {
            devices = try VirtioDeviceSet(
                machine: machine, engine: engine, disks: configuration.disks, nets: configuration.nets,
                namePrefix: namePrefix, vmName: configuration.name)
        } catch {
            throw VMBuildError(vm: configuration.name, stage: .devices, underlying: error)
        }
    }

    /// Stops the vCPUs, then the device queues; nothing in flight is lost. False if the vCPUs did
    /// not all stop (the VM runs on).
    public func pause() -> Bool {
        guard machine.pause() else { return false }
        devices.suspend()
        return true
    }

    /// Restarts the queues, then the vCPUs.
    public func resume() {
        devices.resume()
        machine.resume()
    }

    public var isPaused: Bool { machine.isPaused }

    /// Presses the power button; if the guest has not powered off `timeoutSeconds` later, stops
    /// the VM hard (its exit then reads "shutdown" instead of "poweroff"). A second request while
    /// one is under way presses again and keeps the first deadline.
    public func shutdownGracefully(timeoutSeconds: Int) throws {
        try machine.pressPowerButton()
        let first = shutdownDeadlineSet.withLock { isSet in
            defer { isSet = true }
            return !isSet
        }
        guard first else { return }
        let name = configuration.name
        // Weak: a VM that powered off in time is not kept (nor its RAM mapped) until the deadline.
        DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(timeoutSeconds)) { [weak machine] in
            guard let machine, !machine.isEnding else { return }
            Self.logger.notice(
                "vm did not power off in time: stopped", metadata: ["vm": "\(name)", "timeout": "\(timeoutSeconds)s"])
            machine.requestExit(.shutDown)
        }
    }

    /// The statistics while the VM runs.
    func liveReport() throws -> VMReport {
        VMReport(
            name: configuration.name, vcpus: try machine.vcpuStatistics(), devices: devices.statistics(),
            redirector: machine.redirector, exit: nil)
    }

    /// After the run: stops queue processing (requests in flight finish, the last kicks are
    /// counted) and returns the VM's statistics.
    func finish(exit: MachineExit) throws -> VMReport {
        let vcpus = try machine.vcpuStatistics()
        devices.stop()
        return VMReport(
            name: configuration.name, vcpus: vcpus, devices: devices.statistics(), redirector: machine.redirector,
            exit: exit)
    }
}
