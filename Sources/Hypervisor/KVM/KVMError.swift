import Glibc

/// A failed KVM or host system call, with the operation, its context and errno.
public struct KVMError: Error, CustomStringConvertible, Equatable {
    /// The call that failed and what it was about.
    public enum Operation: Equatable, CustomStringConvertible, Sendable {
        case open(path: String)
        case getAPIVersion
        case createVM
        case getVCPUMmapSize
        case getSupportedCPUID
        case mmap(bytes: Int)
        case setUserMemoryRegion(slot: UInt32)
        case createIRQChip
        case createPIT2
        case setTSSAddress
        case setIdentityMapAddress
        case irqLine(irq: UInt32)
        case createVCPU(id: Int)
        case run(vcpu: Int)
        case getRegisters(vcpu: Int)
        case setRegisters(vcpu: Int)
        case getSpecialRegisters(vcpu: Int)
        case setSpecialRegisters(vcpu: Int)
        case setFPU(vcpu: Int)
        case setCPUID(vcpu: Int)
        case getLAPIC(vcpu: Int)
        case setLAPIC(vcpu: Int)
        case getMSR(vcpu: Int, index: UInt32)
        case setMSR(vcpu: Int, index: UInt32)
        case getStatsFD
        case readStats
        case createThread(name: String)
        case setGSIRouting
        case irqfd(gsi: UInt32)
        case ioeventfd(address: UInt64)
        case eventfd
        case ioUringSetup(queue: String)

        public var description: String {
            switch self {
            case .open(let path): return "open \(path)"
            case .getAPIVersion: return "KVM_GET_API_VERSION"
            case .createVM: return "KVM_CREATE_VM"
            case .getVCPUMmapSize: return "KVM_GET_VCPU_MMAP_SIZE"
            case .getSupportedCPUID: return "KVM_GET_SUPPORTED_CPUID"
            case .mmap(let bytes): return "mmap of \(bytes) bytes"
            case .setUserMemoryRegion(let slot): return "KVM_SET_USER_MEMORY_REGION (slot \(slot))"
            case .createIRQChip: return "KVM_CREATE_IRQCHIP"
            case .createPIT2: return "KVM_CREATE_PIT2"
            case .setTSSAddress: return "KVM_SET_TSS_ADDR"
            case .setIdentityMapAddress: return "KVM_SET_IDENTITY_MAP_ADDR"
            case .irqLine(let irq): return "KVM_IRQ_LINE (irq \(irq))"
            case .createVCPU(let id): return "KVM_CREATE_VCPU (vcpu \(id))"
            case .run(let id): return "KVM_RUN (vcpu \(id))"
            case .getRegisters(let id): return "KVM_GET_REGS (vcpu \(id))"
            case .setRegisters(let id): return "KVM_SET_REGS (vcpu \(id))"
            case .getSpecialRegisters(let id): return "KVM_GET_SREGS (vcpu \(id))"
            case .setSpecialRegisters(let id): return "KVM_SET_SREGS (vcpu \(id))"
            case .setFPU(let id): return "KVM_SET_FPU (vcpu \(id))"
            case .setCPUID(let id): return "KVM_SET_CPUID2 (vcpu \(id))"
            case .getLAPIC(let id): return "KVM_GET_LAPIC (vcpu \(id))"
            case .setLAPIC(let id): return "KVM_SET_LAPIC (vcpu \(id))"
            case .getMSR(let id, let index): return "KVM_GET_MSRS (vcpu \(id), MSR 0x\(String(index, radix: 16)))"
            case .setMSR(let id, let index): return "KVM_SET_MSRS (vcpu \(id), MSR 0x\(String(index, radix: 16)))"
            case .getStatsFD: return "KVM_GET_STATS_FD"
            case .readStats: return "reading KVM binary statistics"
            case .createThread(let name): return "creating thread \(name)"
            case .setGSIRouting: return "KVM_SET_GSI_ROUTING"
            case .irqfd(let gsi): return "KVM_IRQFD (gsi \(gsi))"
            case .ioeventfd(let address): return "KVM_IOEVENTFD (0x\(String(address, radix: 16)))"
            case .eventfd: return "eventfd"
            case .ioUringSetup(let queue): return "io_uring_setup for \(queue)"
            }
        }
    }

    public let operation: Operation
    public let errno: Int32

    public init(_ operation: Operation, errno: Int32 = Glibc.errno) {
        self.operation = operation
        self.errno = errno
    }

    public var description: String {
        "\(operation) failed: \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// Runs a system call wrapper and turns -1 into a `KVMError` carrying errno.
@discardableResult
func check(_ operation: @autoclosure () -> KVMError.Operation, _ call: () -> Int32) throws -> Int32 {
    let result = call()
    if result < 0 { throw KVMError(operation(), errno: errno) }
    return result
}
