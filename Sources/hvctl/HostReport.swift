import CKVM
import Glibc
import Hypervisor

/// Facts about the host's KVM that are not capabilities: which module provides it and what it
/// accelerates. Read from /sys/module, as KVM exposes no ioctl for them.
struct HostReport {
    enum Execution: Equatable, CustomStringConvertible {
        case native(String)
        case emulatedPVM

        var description: String {
            switch self {
            case .native(let technology): return "native (\(technology))"
            case .emulatedPVM:
                return "emulated (PVM: guest ring 0 is emulated; stock Linux kernels boot only in the nested rig)"
            }
        }
    }

    let apiVersion: Int32
    let execution: Execution
    let postedInterrupts: String
    let ioUring: String

    init(kvm: KVM) {
        apiVersion = (try? kvm.apiVersion()) ?? -1
        if Self.exists("/sys/module/kvm_pvm") {
            execution = .emulatedPVM
        } else if Self.exists("/sys/module/kvm_amd") {
            execution = .native("AMD SVM")
        } else {
            execution = .native(Self.exists("/sys/module/kvm_intel") ? "Intel VT-x" : "unknown KVM module")
        }
        postedInterrupts =
            Self.postedInterrupts.map { "available (\($0))" } ?? "absent (interrupts are injected by KVM on VM entry)"
        let result = ckvm_probe_io_uring()
        ioUring = result == 0 ? "available" : "unavailable (io_uring_setup: \(String(cString: strerror(result))))"
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// The host's posted-interrupt hardware as KVM uses it (its module parameters), or nil.
    static var postedInterrupts: String? {
        if let apicv = firstLine("/sys/module/kvm_intel/parameters/enable_apicv"), apicv == "Y" || apicv == "1" {
            return "Intel APICv"
        }
        if let avic = firstLine("/sys/module/kvm_amd/parameters/avic"), avic == "Y" || avic == "1" { return "AMD AVIC" }
        return nil
    }

    static func firstLine(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 64)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return nil }
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.hasSuffix("\n") ? String(text.dropLast()) : text
    }
}
