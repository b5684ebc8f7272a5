import ArgumentParser
import CKVM
import Glibc
import Hypervisor

/// `hvctl check`: what this host's KVM offers Sidecore.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Report what this host's KVM supports; exit 0 when hvctl can run guests here.")

    @Option(name: .customLong("device"), help: "The KVM device to open.")
    var devicePath = "/dev/kvm"

    @Flag(help: "Exit with status 3 unless guest kernel code runs natively (not emulated, as under PVM).")
    var requireNative = false

    /// Capabilities hvctl relies on; the run fails without any of them.
    static let requiredCapabilities: [(name: String, capability: Int32)] = [
        ("USER_MEMORY", KVM_CAP_USER_MEMORY),
        ("IRQCHIP", KVM_CAP_IRQCHIP),
        ("PIT2", KVM_CAP_PIT2),
        ("EXT_CPUID", KVM_CAP_EXT_CPUID),
        ("IMMEDIATE_EXIT", KVM_CAP_IMMEDIATE_EXIT),
        ("BINARY_STATS_FD", KVM_CAP_BINARY_STATS_FD),
        ("IRQFD", KVM_CAP_IRQFD),
        ("IOEVENTFD", KVM_CAP_IOEVENTFD),
        ("IRQ_ROUTING", KVM_CAP_IRQ_ROUTING),
        ("SIGNAL_MSI", KVM_CAP_SIGNAL_MSI),
    ]
    /// Capabilities reported for information.
    static let optionalCapabilities: [(name: String, capability: Int32)] = [
        ("IRQFD_RESAMPLE", KVM_CAP_IRQFD_RESAMPLE),
        ("X2APIC_API", KVM_CAP_X2APIC_API),
        ("SET_TSS_ADDR", KVM_CAP_SET_TSS_ADDR),
        ("X86_DISABLE_EXITS", KVM_CAP_X86_DISABLE_EXITS),
    ]

    func run() throws {
        let kvm: KVM
        do {
            kvm = try KVM(path: devicePath)
        } catch {
            throw ValidationError("\(error)")
        }
        let report = HostReport(kvm: kvm)
        print("KVM device:          \(devicePath)")
        print("KVM API version:     \(report.apiVersion)\(report.apiVersion == 12 ? "" : " (hvctl needs 12)")")
        print("max vCPUs per VM:    \(kvm.maxVCPUs)")
        print("guest kernel code:   \(report.execution.description)")
        print("posted interrupts:   \(report.postedInterrupts)")
        print("io_uring:            \(report.ioUring)")
        print("capabilities:")
        var missing: [String] = []
        for (name, capability) in Self.requiredCapabilities {
            let present = kvm.checkExtension(capability) > 0
            if !present { missing.append(name) }
            print("  \(name.padding(18)) \(present ? "present" : "ABSENT (required)")")
        }
        for (name, capability) in Self.optionalCapabilities {
            print("  \(name.padding(18)) \(kvm.checkExtension(capability) > 0 ? "present" : "absent")")
        }
        guard report.apiVersion == 12, missing.isEmpty else {
            printError("hvctl: this host cannot run guests: missing \(missing.joined(separator: ", "))")
            throw ExitCode.failure
        }
        print("result:              hvctl can run guests on this host")
        if requireNative, report.execution == .emulatedPVM {
            throw ExitCode(3)
        }
    }
}
