import Synchronization

/// The vCPUs' local APIC identities as last read on their own threads (`KVM_GET_LAPIC` waits
/// for a vCPU to leave `KVM_RUN`): the redirector raises the request generation and kicks the
/// vCPUs, and each vCPU thread reads its APIC before it next enters the guest.
public final class LocalAPICDirectory: Sendable {
    private let identities: Lock<[LocalAPICIdentity?]>
    private let generation = Atomic<UInt64>(0)

    public init(vcpuCount: Int) {
        identities = Lock(Array(repeating: nil, count: vcpuCount))
    }

    /// Compared by each vCPU thread with the generation it last answered.
    public var requestedGeneration: UInt64 { generation.load(ordering: .acquiring) }

    /// Asks every vCPU for a fresh reading (the caller kicks them).
    public func requestReadings() {
        generation.add(1, ordering: .releasing)
    }

    /// vCPU `vcpu`'s reading; nil when it failed (the vCPU is then never a redirection target).
    public func store(_ identity: LocalAPICIdentity?, vcpu: Int) {
        identities.withLock { if vcpu < $0.count { $0[vcpu] = identity } }
    }

    public func readings() -> [LocalAPICIdentity?] {
        identities.withLock { $0 }
    }
}
