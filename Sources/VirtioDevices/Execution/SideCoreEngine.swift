import Glibc
import Synchronization

/// How `--io-mode poll|hybrid` runs: how many side cores, where, and how long they poll.
public struct SideCoreConfiguration: Equatable, Sendable {
    public var mode: PollSchedule.Mode
    /// Side cores serving queues at start.
    public var count: Int
    /// Side-core threads created (idle ones sleep): the most `resize` can activate.
    public var maxCount: Int
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
        self.maxCount = count
        self.pollMaxNanoseconds = pollMaxNanoseconds
    }
}

/// Side cores shared by every device of every VM in the process (ELVIS): each attached handler
/// is placed on the active core serving the fewest handlers and polled there. `resize` changes
/// how many cores are active and moves handlers so the active ones stay balanced.
public final class SideCoreEngine: QueueEngine, @unchecked Sendable {
    /// Every side-core thread, active or not (an inactive one has no handlers and sleeps).
    public let cores: [SideCore]
    public let interruptCoalescing: InterruptCoalescingPolicy?
    public let mode: PollSchedule.Mode

    private struct Placement {
        var activeCount: Int
        /// Handlers in attach order, with the index of the core polling each.
        var handlers: [(handler: QueueHandler, core: Int)] = []

        func load(_ core: Int) -> Int { handlers.reduce(0) { $0 + ($1.core == core ? 1 : 0) } }
        var leastLoadedActive: Int { (0..<activeCount).min { load($0) < load($1) } ?? 0 }
    }
    /// Held for a whole attach, detach or resize, so moves never race a placement.
    private let placement: Mutex<Placement>

    public init(configuration: SideCoreConfiguration) throws {
        guard configuration.count >= 1, configuration.maxCount >= configuration.count else { throw SideCoreEngineError.noSideCores }
        let online = max(1, Int32(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        var cores: [SideCore] = []
        for index in 0..<configuration.maxCount {
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
        placement = Mutex(Placement(activeCount: configuration.count))
    }

    /// Side cores serving queues now.
    public var activeCount: Int { placement.withLock { $0.activeCount } }

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
        placement.withLock { placement in
            for handler in handlers {
                let core = placement.leastLoadedActive
                placement.handlers.append((handler, core))
                cores[core].add(handler)
            }
        }
    }

    public func detach(_ handlers: [QueueHandler]) {
        placement.withLock { placement in
            for handler in handlers {
                guard let index = placement.handlers.firstIndex(where: { $0.handler === handler }) else { continue }
                cores[placement.handlers[index].core].remove(handler)
                placement.handlers.remove(at: index)
            }
        }
    }

    /// Serves queues with `count` side cores (1 to `cores.count`). Handlers move one at a time:
    /// the old core lets go after its current round, then the new one takes the handler with its
    /// ring and io_uring as they are, so nothing in flight or waiting is lost. Returns the moves.
    @discardableResult
    public func resize(to count: Int) throws -> Int {
        guard (1...cores.count).contains(count) else { throw SideCoreEngineError.badCount(count, maximum: cores.count) }
        return placement.withLock { placement in
            placement.activeCount = count
            var moves = 0
            func move(_ index: Int, to core: Int) {
                let entry = placement.handlers[index]
                cores[entry.core].remove(entry.handler)
                placement.handlers[index].core = core
                cores[core].add(entry.handler)
                moves += 1
            }
            // Off the cores that are no longer active.
            for index in placement.handlers.indices where placement.handlers[index].core >= count {
                move(index, to: placement.leastLoadedActive)
            }
            // Then from the busiest active core to the idlest until they differ by at most one.
            while true {
                let active = 0..<count
                guard let busiest = active.max(by: { placement.load($0) < placement.load($1) }),
                      placement.load(busiest) - placement.load(placement.leastLoadedActive) > 1,
                      let index = placement.handlers.firstIndex(where: { $0.core == busiest }) else { break }
                move(index, to: placement.leastLoadedActive)
            }
            return moves
        }
    }

    /// Stops every side core (after the devices detached their handlers).
    public func stop() {
        for core in cores { core.stop() }
    }
}

public enum SideCoreEngineError: Error, CustomStringConvertible {
    case noSideCores
    case badCount(Int, maximum: Int)
    public var description: String {
        switch self {
        case .noSideCores: return "no side cores to place queues on"
        case .badCount(let count, let maximum): return "\(count) side cores: must be 1 to \(maximum) (--side-cores-max)"
        }
    }
}
