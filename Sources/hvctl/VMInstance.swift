import ArgumentParser
import Glibc
import Hypervisor
import VirtioDevices

/// One VM of an `hvctl run`: its machine and virtio devices, built from a definition, with its
/// queues on the process's shared engine.
final class VMInstance: Sendable {
    let definition: VMDefinition
    let machine: Machine
    let devices: VirtioDeviceSet
    private let consoleSink: ConsoleSink?

    /// `consoleSink` nil sends the console straight to stdout (a single VM). `label` prefixes
    /// errors about the VM's own inputs when several run.
    init(definition: VMDefinition, kvm: KVM, engine: QueueEngine, consoleSink: ConsoleSink?, label: String) throws {
        self.definition = definition
        self.consoleSink = consoleSink
        let configuration = MachineConfiguration(
            boot: LinuxBootConfiguration(kernelPath: definition.kernel, initrdPath: definition.initrd, commandLine: definition.cmdline),
            vcpuCount: definition.cpus, memoryInBytes: UInt64(definition.memory) << 20)
        do {
            let output: @Sendable (UInt8) -> Void
            if let consoleSink { output = { consoleSink.write($0) } } else { output = { ConsoleOutput.write($0) } }
            machine = try Machine(configuration: configuration, kvm: kvm, consoleOutput: output)
        } catch let error as BootError {
            throw ValidationError(label + FlagNames.message(for: error))
        } catch let error as ConfigurationError {
            throw ValidationError(label + FlagNames.message(for: error))
        } catch {
            printError("hvctl: \(label)cannot create the VM: \(error)")
            throw ExitCode.failure
        }
        do {
            devices = try VirtioDeviceSet(machine: machine, engine: engine, disks: try definition.disks.map(DiskArgument.parse),
                                          nets: try definition.nets.map(NetArgument.parse), namePrefix: label.isEmpty ? "" : "\(definition.name).")
        } catch let error as ConfigurationError {
            throw ValidationError(label + FlagNames.message(for: error))
        } catch let error as NetDeviceError {
            throw ValidationError(label + error.description)
        }
    }

    /// The statistics while the VM runs.
    func liveReport() throws -> VMReport {
        VMReport(name: definition.name, vcpus: try machine.vcpuStatistics(), devices: devices.statistics(),
                 redirector: machine.activeRedirector, exit: nil)
    }

    /// After the run: stops queue processing (requests in flight finish, the last kicks are
    /// counted) and returns the VM's statistics.
    func finish(exit: MachineExit) throws -> VMReport {
        consoleSink?.flush()
        let vcpus = try machine.vcpuStatistics()
        devices.stop()
        return VMReport(name: definition.name, vcpus: vcpus, devices: devices.statistics(), redirector: machine.activeRedirector, exit: exit)
    }
}
