import CKVM
import Glibc

/// An open `/dev/kvm`: the system-level KVM API.
public final class KVM: Sendable {
    public let fd: Int32
    public let path: String

    public init(path: String = "/dev/kvm") throws {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        if fd < 0 { throw KVMError(.open(path: path)) }
        self.fd = fd
        self.path = path
    }

    deinit { close(fd) }

    /// Corresponds to `KVM_GET_API_VERSION`.
    public func apiVersion() throws -> Int32 {
        try check(.getAPIVersion) { ckvm_get_api_version(fd) }
    }

    /// Corresponds to `KVM_CHECK_EXTENSION`; 0 means absent, a positive value is the capability's value.
    public func checkExtension(_ capability: Int32) -> Int32 {
        max(0, ckvm_check_extension(fd, Int(capability)))
    }

    /// Corresponds to `KVM_GET_VCPU_MMAP_SIZE`.
    public func vcpuMmapSize() throws -> Int {
        Int(try check(.getVCPUMmapSize) { ckvm_get_vcpu_mmap_size(fd) })
    }

    /// The most vCPUs one VM may have (`KVM_CAP_MAX_VCPUS`, falling back to `KVM_CAP_NR_VCPUS`).
    public var maxVCPUs: Int {
        let max = checkExtension(KVM_CAP_MAX_VCPUS)
        return Int(max > 0 ? max : checkExtension(KVM_CAP_NR_VCPUS))
    }

    /// Corresponds to `KVM_GET_SUPPORTED_CPUID`.
    public func supportedCPUID() throws -> [kvm_cpuid_entry2] {
        var capacity = 128
        while true {
            let list = KVMFlexibleArray<kvm_cpuid2, kvm_cpuid_entry2>(capacity: capacity, count: \.nent)
            let result = ckvm_get_supported_cpuid(fd, list.header)
            if result == 0 { return list.elements(count: Int(list.header.pointee.nent)) }
            if errno == E2BIG && capacity < 4096 { capacity *= 2; continue }
            throw KVMError(.getSupportedCPUID)
        }
    }

    /// Corresponds to `KVM_CREATE_VM`.
    public func createVM() throws -> VirtualMachine {
        var vmfd: Int32
        repeat { vmfd = ckvm_create_vm(fd, 0) } while vmfd < 0 && errno == EINTR
        if vmfd < 0 { throw KVMError(.createVM) }
        return VirtualMachine(fd: vmfd, kvm: self)
    }
}
