import Glibc

/// Where a run's threads go on the host, decided once for the run: each side-core thread's CPU
/// and the CPUs the vCPU threads may use.
public struct CPUPlacement: Equatable, Sendable {
    /// side<i>'s CPU (nil: unpinned), one per side-core thread; empty without side cores.
    public let sideCoreCPUs: [Int32?]
    /// CPUs every vCPU thread may run on; nil: any.
    public let vcpuCPUs: [Int32]?

    /// For `sideCores` (nil: notify threads only) and `vcpuCount` vCPUs over all VMs, on a host
    /// with `onlineCPUs` CPUs.
    public init(sideCores: SideCoreConfiguration?, vcpuCount: Int, onlineCPUs: Int32 = CPUPlacement.onlineCPUs) {
        let online = max(1, onlineCPUs)
        guard let sideCores else {
            sideCoreCPUs = []
            vcpuCPUs = nil
            return
        }
        sideCoreCPUs = (0..<max(0, sideCores.maxCount)).map { index in
            switch sideCores.placement {
            case .lastCPUs: return online - 1 - Int32(index % Int(online))
            case .cpus(let list): return index < list.count ? list[index] : nil
            case .unpinned: return nil
            }
        }
        // Poll-mode cores never pause, so vCPUs keep off them whenever any other CPU exists;
        // hybrid cores sleep when idle, so vCPUs keep off them only when the rest still gives
        // every vCPU a CPU of its own (otherwise they may share).
        let taken = Set(sideCoreCPUs.compactMap { $0 })
        let left = (0..<online).filter { !taken.contains($0) }
        vcpuCPUs = !left.isEmpty && (sideCores.mode == .poll || left.count >= vcpuCount) ? left : nil
    }

    /// Whether every side core is pinned to a CPU the vCPUs keep off. Only then may hybrid
    /// mode's poll window grow past its floor (`AdaptivePollWindow`): where vCPUs share a side
    /// core's CPU, polling longer takes that CPU from the vCPUs whose requests it waits for (two
    /// VMs on one side core, 2 CPUs: hybrid QD16 346k IOPS with the growing bound against 446k
    /// with the fixed one, medians of three interleaved runs).
    public var sideCoresHaveTheirOwnCPUs: Bool {
        guard let vcpuCPUs, !sideCoreCPUs.isEmpty else { return false }
        return sideCoreCPUs.allSatisfy { cpu in cpu.map { !vcpuCPUs.contains($0) } ?? false }
    }

    public static var onlineCPUs: Int32 { Int32(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }
}
