import ArgumentParser
import Logging
import Glibc
import Hypervisor
import Synchronization
import VirtioDevices
import VMM

/// `hvctl run`: boots one Linux guest with its serial console on stdin/stdout, or several
/// (`--config`) sharing the side cores.
///
/// Exit status: 0 guest powered off, 2 guest rebooted (including a triple fault or a panic with
/// panic=-1), 1 hvctl or KVM failure, 64 bad usage, 128+N stopped by signal N (Ctrl-A x: SIGINT's 130).
/// With several VMs, 0 when all powered off, else the worst of failure, signal, reboot.
struct Run: ParsableCommand {
    static let rebootExitCode: Int32 = 2
    static let defaultCommandLine = "console=ttyS0 panic=-1"

    static let configuration = CommandConfiguration(
        abstract:
            """
            Boot a Linux guest (bzImage or PVH vmlinux) with a serial console on stdin/stdout, or several with \
            --config.
            """,
        discussion: """
            Exit status: 0 when the guest powers off, 2 when it reboots (reboot, panic with panic=-1, \
            triple fault), 1 on a VMM or KVM failure, 64 on bad usage, 128+N when stopped by signal N. \
            On a terminal the console is raw; type Ctrl-A x to stop the VM.
            """)

    // Boot options first: they are what `run --help` should lead with.
    @OptionGroup(title: "Boot")
    var boot: BootOptions

    @OptionGroup(title: "I/O engine")
    var io: IOEngineOptions

    @Flag(help: "Print each vCPU's KVM statistics to stderr at exit.")
    var stats = false

    @Option(name: .customLong("stats-json"), help: "Write KVM statistics as JSON to this file at exit.")
    var statsJSON: String?

    @Option(
        name: .customLong("api-socket"),
        help: ArgumentHelp(
            """
            Serve the HTTP API (docs/api.yaml) on this Unix socket while the VMs run: hvctl info, pause, resume, \
            shutdown, stats, metrics and iocm use it, as can curl --unix-socket. A stale socket is replaced.
            """,
            valueName: "path"))
    var apiSocket: String?

    @Option(name: .customLong("device"), help: "The KVM device to open.")
    var devicePath = "/dev/kvm"

    @Option(
        name: .customLong("log-level"),
        help: ArgumentHelp(
            """
            Log events at this level and above: trace, debug, info, notice, warning, error or critical \
            (default notice).
            """,
            valueName: "level"))
    var logLevel: Logger.Level?

    @Flag(
        name: [.customShort("v"), .customLong("verbose")], help: "Log at info level (what runs, API requests' effects)."
    )
    var verbose = false

    @Option(
        name: .customLong("log-file"),
        help: ArgumentHelp(
            "Append log lines to this file instead of stderr (hvctl's result lines go to both).", valueName: "path"))
    var logFile: String?

    func run() throws {
        let destination: LogLines.Destination
        if let logFile {
            guard let file = LogLines.Destination.file(logFile) else {
                throw ValidationError("--log-file \(logFile): \(String(cString: strerror(errno)))")
            }
            destination = file
        } else {
            destination = .standardError
        }
        HVCtlLog.bootstrap(level: logLevel ?? (verbose ? .info : .notice), destination: destination)
        let definitions = try boot.config.map(VMConfigFile.load) ?? [boot.commandLineVM()]
        let several = boot.config != nil
        let totalMemory = definitions.reduce(0) { $0 + $1.memory }
        if !boot.memoryOvercommit, let host = MemorySize.hostMebibytes, totalMemory > host {
            let what =
                several ? "--config \(boot.config ?? ""): the VMs' \(totalMemory) MiB" : "--memory \(totalMemory)"
            throw ValidationError("\(what): more than this host's \(host) MiB of RAM (--memory-overcommit allows it)")
        }
        let statisticsFile = try statsJSON.map { try OutputFile(flag: "--stats-json", path: $0) }
        let vms = try definitions.map { try $0.configuration() }
        let io = try self.io.ioConfiguration()

        // Every thread started from here on inherits the mask; the signal watcher takes them.
        SignalWatcher.blockInThisThread()

        // While this is the only thread (the VMs' side cores start with them): see CodeResidency.
        if let kib = CodeResidency.trimUnwrittenData() {
            logger.debug("unwritten data pages dropped", metadata: ["kib": "\(kib)"])
        } else {
            logger.debug("unwritten data pages kept: more than one thread runs")
        }
        let kvm: KVM
        do {
            kvm = try KVM(path: devicePath)
        } catch {
            printError("hvctl: cannot create the VM: \(error)")
            throw ExitCode.failure
        }
        // Several VMs: each console goes to its file, or to stdout with its lines prefixed.
        var sinks: [ConsoleSink] = []
        let runtime: VMMRuntime
        do {
            runtime = try VMMRuntime(vms: vms, io: io, kvm: kvm, namedVMs: several) { vm in
                guard several else { return { ConsoleOutput.write($0) } }
                let definition = definitions.first { $0.name == vm.name }
                let sink: ConsoleSink
                do {
                    sink = try definition?.console.map(ConsoleSink.init(path:)) ?? ConsoleSink(prefixedWith: vm.name)
                } catch let error as ConsoleSinkError {
                    throw ValidationError("--config \(boot.config ?? ""): vm \(vm.name): \(error.description)")
                }
                sinks.append(sink)
                return { sink.write($0) }
            }
        } catch let error as VMBuildError {
            throw Self.exitError(for: error, label: several ? "vm \(error.vm): " : "")
        }

        let api: APIServer?
        do {
            let endpoints = VMMAPI(runtime: runtime, version: HVCtl.version)
            api = try apiSocket.map { try APIServer(path: $0, respond: endpoints.respond(to:)) }
        } catch let error as APISocketError {
            throw ValidationError("--api-socket \(error)")
        }
        if let apiSocket { logger.info("api listening", metadata: ["socket": "\(apiSocket)"]) }
        for vm in runtime.vms {
            let configuration = vm.configuration
            logger.info(
                "vm starting",
                metadata: [
                    "vm": "\(configuration.name)", "cpus": "\(configuration.machine.vcpuCount)",
                    "memory_mib": "\(configuration.machine.memoryInBytes >> 20)",
                    "disks": "\(configuration.disks.count)",
                    "nets": "\(configuration.nets.count)", "io_mode": "\(runtime.ioModeName)",
                ])
        }
        // The console's input goes to a single VM only; several VMs run without input. It takes the
        // terminal last, so that every way out after this gives it back; a failure to start either
        // stops what started before it (the API's socket is removed).
        let first = runtime.vms[0].machine
        let signals: SignalWatcher
        let console: Console?
        do {
            signals = try SignalWatcher { signal in runtime.stop(.stopped(signal: signal)) }
            do {
                console = several ? nil : try Console(onEscape: { first.requestExit(.stopped(signal: SIGINT)) })
            } catch {
                signals.stop()
                throw error
            }
        } catch {
            api?.stop()
            throw error
        }
        let stopFrontEnd = {
            signals.stop()
            api?.stop()
            console?.stop()
        }
        let exits: [MachineExit]
        // What parsed the options and built the VMs is not needed again.
        CodeResidency.trim()
        do {
            try console?.start(forwardingTo: first.serial)
            exits = try runtime.run()
        } catch {
            stopFrontEnd()
            throw error
        }
        stopFrontEnd()
        for sink in sinks { sink.flush() }

        for (vm, exit) in zip(runtime.vms, exits) {
            logger.info("vm ended", metadata: ["vm": "\(vm.configuration.name)", "exit": "\(exit)"])
            let label = several ? "vm \(vm.configuration.name): " : ""
            let fault = vm.machine.tripleFault
            if let fault { printError("hvctl: \(label)\(fault)") }
            // Where each vCPU was, to diagnose a triple fault, a failure or a hang the user ended.
            var failed = false
            if case .failed = exit { failed = true }
            if fault != nil || failed || signals.signal != nil {
                for report in vm.machine.vcpuStateReports {
                    for line in report.lines { printError("hvctl: \(label)\(line)") }
                }
            }
        }
        let report = try runtime.finish(exits: exits)
        if stats {
            for vm in report.vms {
                if several { printError("\(vm.name):") }
                StatisticsTable.print(vm)
            }
        }
        try statisticsFile?.write(report)
        try Self.finish(exits, names: definitions.map(\.name), several: several)
    }

    /// What a VM that could not be built makes hvctl say: one line naming the flag or field, or
    /// (KVM's own failures) the reason and exit status 1.
    private static func exitError(for error: VMBuildError, label: String) -> Error {
        switch error.underlying {
        case let bootError as BootError: return ValidationError(label + FlagNames.message(for: bootError))
        case let configurationError as ConfigurationError:
            return ValidationError(label + FlagNames.message(for: configurationError))
        case let netError as NetDeviceError: return ValidationError(label + netError.description)
        case let underlying where error.stage == .machine:
            printError("hvctl: \(label)cannot create the VM: \(underlying)")
            return ExitCode.failure
        case let underlying:
            return underlying
        }
    }

    /// The exit status: 0 when every VM powered off; otherwise a failure (1) before a signal
    /// (128+N) before a reboot (2). Failures are named on stderr.
    private static func finish(_ exits: [MachineExit], names: [String], several: Bool) throws {
        var status: Int32 = 0
        for (exit, name) in zip(exits, names) {
            switch exit {
            case .powerOff, .shutDown:
                break
            case .reboot:
                if status == 0 { status = rebootExitCode }
            case .stopped(let signal):
                if status != ExitCode.failure.rawValue { status = 128 + signal }
            case .failed(let reason):
                printError("hvctl: \(several ? "vm \(name): " : "")the guest stopped: \(reason)")
                status = ExitCode.failure.rawValue
            }
        }
        if status != 0 { throw ExitCode(status) }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
