import ArgumentParser
import FoundationEssentials
import Glibc
import Hypervisor

/// One VM's part of the `--stats-json` document: vCPU counters keyed by KVM's own statistic
/// names, per-queue device counters, and how the VM ended.
struct VMReport: Encodable {
    struct VCPU: Encodable {
        let id: Int
        let kvm: [String: UInt64]
    }

    /// Interrupt redirection's route changes; nil when it is off or the VM has one vCPU.
    struct Redirection: Encodable {
        let mode: String
        let retargets: UInt64
        let restores: UInt64
        let failures: UInt64
        let lastFailure: String?

        init(_ redirector: InterruptRedirector) {
            mode = redirector.mode.rawValue
            retargets = redirector.retargets.count
            restores = redirector.restores.count
            failures = redirector.failures.count
            lastFailure = redirector.lastFailure.withLock { $0 }
        }
    }

    let name: String
    let vcpus: [VCPU]
    let devices: [DeviceStatistics]
    let exit: String
    let irqRedirection: Redirection?

    /// `exit` nil: the VM is still running (a live report on the control socket).
    init(name: String, vcpus: [[String: UInt64]], devices: [DeviceStatistics], redirector: InterruptRedirector?, exit: MachineExit?) {
        self.name = name
        irqRedirection = redirector.map(Redirection.init)
        self.vcpus = vcpus.enumerated().map { VCPU(id: $0.offset, kvm: $0.element) }
        self.devices = devices
        switch exit {
        case nil: self.exit = "running"
        case .powerOff: self.exit = "poweroff"
        case .reboot: self.exit = "reboot"
        case .stopped(let signal): self.exit = "signal \(signal)"
        case .failed(let reason): self.exit = "failed: \(reason)"
        }
    }
}

/// The `--stats-json` document. One VM: `{"vcpus":[{"id":0,"kvm":{"exits":N,...}}],"devices":
/// [{"name":"blk0","type":"virtio-blk","queues":[{"index":0,"requests":N,...}]}],"exit":"poweroff",
/// "ioMode":"hybrid","sideCores":[{"name":"side0",...}]}`. Several VMs (`--config`): the VMs'
/// parts, each with its name, under "vms", next to the shared "ioMode" and "sideCores".
struct StatisticsReport: Encodable {
    let vms: [VMReport]
    let ioMode: String
    let sideCores: [SideCoreReport]
    /// One VM from the command line: its fields at the top level.
    let singleVMAtTopLevel: Bool
    /// With --side-cores auto: whether the iocm thread decides now, and how often it resized.
    var iocm: IOCMReport?

    struct IOCMReport: Encodable {
        let automatic: Bool
        let resizes: UInt64
    }

    private enum CodingKeys: String, CodingKey { case vms, vcpus, devices, exit, irqRedirection, ioMode, sideCores, iocm }

    func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        if singleVMAtTopLevel, let vm = vms.first {
            try container.encode(vm.vcpus, forKey: .vcpus)
            try container.encode(vm.devices, forKey: .devices)
            try container.encode(vm.exit, forKey: .exit)
            try container.encodeIfPresent(vm.irqRedirection, forKey: .irqRedirection)
        } else {
            try container.encode(vms, forKey: .vms)
        }
        try container.encode(ioMode, forKey: .ioMode)
        try container.encode(sideCores, forKey: .sideCores)
        try container.encodeIfPresent(iocm, forKey: .iocm)
    }

    /// The counters shown by `--stats`, in this order; every other KVM statistic is in the JSON.
    static let summaryNames = [
        "exits", "io_exits", "mmio_exits", "halt_exits", "irq_exits", "irq_window_exits",
        "irq_injections", "nmi_injections", "insn_emulation", "signal_exits", "blocking",
    ]

    static func print(_ vcpus: [[String: UInt64]]) {
        printError("KVM statistics per vCPU:")
        let names = summaryNames.filter { name in vcpus.contains { $0[name] != nil } }
        printError("  " + "vcpu".padding(6) + names.map { $0.padding(16) }.joined())
        for (id, values) in vcpus.enumerated() {
            printError("  " + "\(id)".padding(6) + names.map { "\(values[$0] ?? 0)".padding(16) }.joined())
        }
    }
}

/// The `--stats-json` output file: its directory is checked before the VM starts so a bad path
/// fails early and nothing is created; the document is written whole at exit.
struct StatisticsFile {
    let path: String

    init(path: String) throws {
        let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        if access(directory.isEmpty ? "/" : directory, W_OK) != 0 {
            throw ValidationError("--stats-json \(path): \(String(cString: strerror(errno)))")
        }
        self.path = path
    }

    func write(_ report: StatisticsReport) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var data = try encoder.encode(report)
        data.append(UInt8(ascii: "\n"))
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ValidationError("--stats-json \(path): \(String(cString: strerror(errno)))") }
        let written = data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
        // Written whole then renamed, so the file never holds half a document.
        guard written == data.count, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw ValidationError("--stats-json \(path): \(String(cString: strerror(errno)))")
        }
    }
}
