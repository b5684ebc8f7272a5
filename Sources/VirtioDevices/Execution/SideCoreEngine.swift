import Glibc
import Synchronization

/// How `--io-mode poll|hybrid` runs: how many side cores, where, and how long they poll.
public struct SideCoreConfiguration: Equatable, Sendable {
    public var mode: PollSchedule.Mode
    public var count: Int
    /// Upper bound of a queue's adaptive idle window in hybrid mode (`--poll-max-us`).
    public var pollMaxNanoseconds: UInt64
    /// Requests a handler may take per round before the core moves on to the next queue.
    public var budget = 32
    /// Where the side-core threads run.
    public enum Placement: Equatable, Sendable {
        /// side0 on the highest-numbered CPU, side1 on the next, ...
        case lastCPUs
        /// side<i> on the i-th CPU of the list.
        case cpus([Int32])
        /// Wherever the host scheduler puts them.
        case unpinned
    }
    public var placement = Placement.lastCPUs
    /// Adaptive interrupt coalescing for every queue (`--irq-coalesce on`), or nil.
    public var coalescing: InterruptCoalescingPolicy? = InterruptCoalescingPolicy()

    public init(mode: PollSchedule.Mode, count: Int, pollMaxNanoseconds: UInt64) {
        self.mode = mode
        self.count = count
        self.pollMaxNanoseconds = pollMaxNanoseconds
    }
}

/// Side cores shared by every device of every VM in the process (ELVIS): each attached handler
/// is placed on the core serving the fewest handlers and polled there.
public final class SideCoreEngine: QueueEngine, @unchecked Sendable {
    public let cores: [SideCore]
    public let interruptCoalescing: InterruptCoalescingPolicy?
    public let mode: PollSchedule.Mode
    private let placement = Mutex<[ObjectIdentifier: SideCore]>([:])

    public init(configuration: SideCoreConfiguration) throws {
        let online = max(1, Int32(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        var cores: [SideCore] = []
        for index in 0..<configuration.count {
            let cpu: Int32?
            switch configuration.placement {
            case .lastCPUs: cpu = online - 1 - Int32(index % Int(online))
            case .cpus(let list): cpu = index < list.count ? list[index] : nil
            case .unpinned: cpu = nil
            }
            cores.append(try SideCore(name: "side\(index)", cpu: cpu, mode: configuration.mode, budget: configuration.budget,
                                      pollMaxNanoseconds: configuration.pollMaxNanoseconds))
        }
        self.cores = cores
        mode = configuration.mode
        interruptCoalescing = configuration.coalescing
    }

    /// Host CPUs left for vCPU threads when the side cores poll without pause (poll mode): the
    /// online CPUs minus the side cores' own, or nil when that would leave none or the cores
    /// may sleep (hybrid), in which case vCPUs may share their CPUs.
    public var cpusForVCPUs: [Int32]? {
        guard mode == .poll else { return nil }
        let online = max(1, Int32(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        let taken = Set(cores.compactMap(\.cpu))
        let left = (0..<online).filter { !taken.contains($0) }
        return left.isEmpty ? nil : left
    }

    public func attach(_ handlers: [QueueHandler]) throws {
        for handler in handlers {
            guard let core = cores.min(by: { $0.load < $1.load }) else { throw SideCoreEngineError.noSideCores }
            placement.withLock { $0[ObjectIdentifier(handler)] = core }
            core.add(handler)
        }
    }

    public func detach(_ handlers: [QueueHandler]) {
        for handler in handlers {
            placement.withLock { $0.removeValue(forKey: ObjectIdentifier(handler)) }?.remove(handler)
        }
    }

    /// Stops every side core (after the devices detached their handlers).
    public func stop() {
        for core in cores { core.stop() }
    }
}

public enum SideCoreEngineError: Error, CustomStringConvertible {
    case noSideCores
    public var description: String { "no side cores to place queues on" }
}
