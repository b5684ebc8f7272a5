import Hypervisor
import VirtioDevices

/// One VM of a run: its machine and virtio devices, built from its configuration, with its
/// queues on the run's shared engine.
public final class VMInstance: Sendable {
    public let configuration: VMConfiguration
    public let machine: Machine
    public let devices: VirtioDeviceSet

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
                namePrefix: namePrefix)
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
