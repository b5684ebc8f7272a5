import ArgumentParser
import Glibc
import Hypervisor
import VirtioDevices

/// `hvctl run`: boots one Linux guest with its serial console on stdin/stdout.
///
/// Exit status: 0 guest powered off, 2 guest rebooted (including a triple fault or a panic with
/// panic=-1), 1 hvctl or KVM failure, 64 bad usage, 128+N stopped by signal N (Ctrl-A x: SIGINT's 130).
struct Run: ParsableCommand {
    static let rebootExitCode: Int32 = 2
    static let defaultCommandLine = "console=ttyS0 panic=-1"

    static let configuration = CommandConfiguration(
        abstract: "Boot a Linux guest (bzImage or PVH vmlinux) with a serial console on stdin/stdout.",
        discussion: """
            Exit status: 0 when the guest powers off, 2 when it reboots (reboot, panic with panic=-1, \
            triple fault), 1 on a VMM or KVM failure, 64 on bad usage, 128+N when stopped by signal N. \
            On a terminal the console is raw; type Ctrl-A x to stop the VM.
            """)

    @Option(help: "Kernel: a bzImage, or an uncompressed ELF vmlinux with a PVH entry note.")
    var kernel: String

    @Option(help: "Initial ramdisk loaded for the kernel.")
    var initrd: String?

    @Option(help: "Kernel command line.")
    var cmdline: String = Run.defaultCommandLine

    @Option(help: "Number of vCPUs.")
    var cpus: Int = 1

    @Option(help: "Guest RAM in MiB.")
    var memory: Int = 512

    @Option(name: .customLong("disk"), help: ArgumentHelp(
        "A virtio-blk disk: path=FILE[,readonly=on][,queues=N][,backend=file|null][,size=BYTES][,id=NAME]. Repeatable.",
        valueName: "options"))
    var disks: [String] = []

    @Option(name: .customLong("net"), help: ArgumentHelp(
        "A virtio-net device on a TAP: tap=NAME[,mac=MAC][,queues=N] (queue pairs). Repeatable.", valueName: "options"))
    var nets: [String] = []

    @OptionGroup(title: "I/O engine")
    var io: IOEngineOptions

    @Flag(help: "Print each vCPU's KVM statistics to stderr at exit.")
    var stats = false

    @Option(name: .customLong("stats-json"), help: "Write KVM statistics as JSON to this file at exit.")
    var statsJSON: String?

    @Option(name: .customLong("device"), help: "The KVM device to open.")
    var devicePath = "/dev/kvm"

    func validate() throws {
        if cpus < 1 { throw ValidationError("--cpus \(cpus): a guest needs at least 1 vCPU") }
        if memory < 1 { throw ValidationError("--memory \(memory): a guest needs at least 1 MiB") }
        if memory > 1 << 20 { throw ValidationError("--memory \(memory): more than 1 TiB is not supported") }
        for disk in disks { _ = try DiskArgument.parse(disk) }
        for net in nets { _ = try NetArgument.parse(net) }
    }

    func run() throws {
        let configuration = MachineConfiguration(
            boot: LinuxBootConfiguration(kernelPath: kernel, initrdPath: initrd, commandLine: cmdline),
            vcpuCount: cpus, memoryInBytes: UInt64(memory) << 20)
        let statisticsFile = try statsJSON.map { try StatisticsFile(path: $0) }

        // Every thread started from here on inherits the mask; the signal thread takes them.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        let machine: Machine
        do {
            let kvm = try KVM(path: devicePath)
            machine = try Machine(configuration: configuration, kvm: kvm, consoleOutput: ConsoleOutput.write)
        } catch let error as BootError {
            throw ValidationError(error.description)
        } catch let error as MachineConfigurationError {
            throw ValidationError(error.description)
        } catch {
            printError("hvctl: cannot create the VM: \(error)")
            throw ExitCode.failure
        }

        let (engine, sideCores) = try io.makeEngine()
        let devices: VirtioDeviceSet
        do {
            devices = try VirtioDeviceSet(machine: machine, engine: engine, disks: try disks.map(DiskArgument.parse),
                                          nets: try nets.map(NetArgument.parse))
        } catch let error as BlockDeviceError {
            throw ValidationError(error.description)
        } catch let error as NetDeviceError {
            throw ValidationError(error.description)
        }

        let console = Console(onEscape: { machine.requestExit(.stopped(signal: SIGINT)) })
        try console.start(forwardingTo: machine.serial)
        _ = try HostThread(name: "signals") {
            var received: Int32 = 0
            sigwait(&signals, &received)
            machine.requestExit(.stopped(signal: received))
        }
        let exit = try machine.run()
        console.restore()

        let statistics = try machine.vcpuStatistics()
        if stats { StatisticsReport.print(statistics) }
        // Queues are detached first: that finishes requests in flight and counts the last kicks.
        devices.stop()
        let sideCoreStatistics = sideCores.map(SideCoreReport.collect) ?? []
        sideCores?.stop()
        try statisticsFile?.write(StatisticsReport(vcpus: statistics, devices: devices.statistics(), sideCores: sideCoreStatistics,
                                                   ioMode: io.ioMode.rawValue, exit: exit))

        switch exit {
        case .powerOff:
            return
        case .reboot:
            throw ExitCode(Self.rebootExitCode)
        case .stopped(let signal):
            throw ExitCode(128 + signal)
        case .failed(let reason):
            printError("hvctl: the guest stopped: \(reason)")
            throw ExitCode.failure
        }
    }
}
