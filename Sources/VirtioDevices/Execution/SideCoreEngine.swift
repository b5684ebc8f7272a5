import Hypervisor
import Glibc
import Synchronization

/// How `--io-mode poll|hybrid` runs: how many side cores, where, and how long they poll.
public struct SideCoreConfiguration: Equatable, Sendable {
    public var mode: PollSchedule.Mode
    /// Side cores serving queues at start (0: notify threads until a resize adds one).
    public var count: Int
    /// Side-core threads created (idle ones sleep): the most `resize` can activate.
    public var maxCount: Int
    /// Upper bound of a queue's adaptive idle window in hybrid mode (`--poll-max-us`): with
    /// `pollWindowCeiling`, where that bound starts and the least it shrinks to.
    public var pollMaxNanoseconds: UInt64
    /// How far the guest's kicks may grow the bound (`AdaptivePollWindow`); nil keeps it fixed.
    public var pollWindowCeiling: UInt64?
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
/// how many cores are active and moves handlers so the active ones stay balanced; with none
/// active, handlers run on notify threads (`NotifyEngine`), as in `--io-mode notify`.
public final class SideCoreEngine: QueueEngine, Sendable {
    /// Every side-core thread, active or not (an inactive one has no handlers and sleeps).
    public let cores: [SideCore]
    public let interruptCoalescing: InterruptCoalescingPolicy?
    public let mode: PollSchedule.Mode
    /// Where handlers go while no side core is active.
    private let notifyThreads = NotifyEngine()

    private struct HandlerAssignment {
        var activeCount: Int
        /// Handlers in attach order, with the index of the core polling each (nil: a notify thread).
        var handlers: [(handler: QueueHandler, core: Int?)] = []
        /// Requests of handlers detached so far, so the engine's total never goes down.
        var retiredRequests: UInt64 = 0

        func load(_ core: Int) -> Int { handlers.reduce(0) { $0 + ($1.core == core ? 1 : 0) } }
        var leastLoadedActive: Int? { (0..<activeCount).min { load($0) < load($1) } }
    }
    /// Held for a whole attach, detach or resize, so moves never race a placement. Shared by
    /// every VM, so nothing under it waits for more than one handler's bounded call (see
    /// `SideCore.remove` and `NotifyEngine.detach`).
    private let placement: Lock<HandlerAssignment>

    /// Side-core threads for `configuration`, side<i> on `cpus[i]` (nil or missing: unpinned).
    public init(configuration: SideCoreConfiguration, cpus: [Int32?]) throws {
        guard configuration.count >= 0, configuration.maxCount >= max(1, configuration.count) else {
            throw SideCoreEngineError.noSideCores
        }
        var cores: [SideCore] = []
        for index in 0..<configuration.maxCount {
            cores.append(
                try SideCore(
                    name: "side\(index)", cpu: index < cpus.count ? cpus[index] : nil, mode: configuration.mode,
                    budget: configuration.budget, pollMaxNanoseconds: configuration.pollMaxNanoseconds,
                    pollWindowCeiling: configuration.pollWindowCeiling))
        }
        self.cores = cores
        mode = configuration.mode
        interruptCoalescing = configuration.coalescing
        placement = Lock(HandlerAssignment(activeCount: configuration.count))
    }

    /// Side-core threads placed as `configuration.placement` says.
    public convenience init(configuration: SideCoreConfiguration) throws {
        try self.init(
            configuration: configuration, cpus: CPUPlacement(sideCores: configuration, vcpuCount: 0).sideCoreCPUs)
    }

    /// Side cores serving queues now (0: every queue is on a notify thread).
    public var activeCount: Int { placement.withLock { $0.activeCount } }

    /// Requests every handler attached so far has taken from its guest (the load IOcm watches).
    public var requestsHandled: UInt64 {
        placement.withLock { placement in
            placement.handlers.reduce(placement.retiredRequests) { $0 + $1.handler.requestsHandled }
        }
    }

    /// Places every handler, or none: when one cannot be started, those placed are taken back.
    public func attach(_ handlers: [QueueHandler]) throws {
        try placement.withLock { placement in
            let before = placement.handlers.count
            do {
                for handler in handlers {
                    let core = placement.leastLoadedActive
                    if let core {
                        cores[core].add(handler)
                    } else {
                        try notifyThreads.attach([handler])
                    }
                    placement.handlers.append((handler, core))
                }
            } catch {
                for (handler, core) in placement.handlers[before...] {
                    if let core { cores[core].remove(handler) } else { notifyThreads.detach([handler]) }
                }
                placement.handlers.removeSubrange(before...)
                throw error
            }
        }
    }

    public func detach(_ handlers: [QueueHandler]) {
        placement.withLock { placement in
            for handler in handlers {
                guard let index = placement.handlers.firstIndex(where: { $0.handler === handler }) else { continue }
                if let core = placement.handlers[index].core {
                    cores[core].remove(handler)
                } else {
                    notifyThreads.detach([handler])
                }
                placement.retiredRequests += handler.requestsHandled
                placement.handlers.remove(at: index)
            }
        }
    }

    /// Serves queues with `count` side cores (0 to `cores.count`; 0 hands every queue to a notify
    /// thread). Handlers move one at a time: the old core or thread lets go after its current
    /// round, then the new one takes the handler with its ring and io_uring as they are, so
    /// nothing in flight or waiting is lost. Returns the moves.
    @discardableResult
    public func resize(to count: Int) throws -> Int {
        guard (0...cores.count).contains(count) else { throw SideCoreEngineError.badCount(count, maximum: cores.count) }
        return try placement.withLock { placement in
            placement.activeCount = count
            var moves = 0
            func move(_ index: Int, to core: Int?) throws {
                let entry = placement.handlers[index]
                if let old = entry.core {
                    cores[old].remove(entry.handler)
                } else {
                    notifyThreads.detach([entry.handler])
                }
                if let core {
                    cores[core].add(entry.handler)
                } else {
                    do {
                        try notifyThreads.attach([entry.handler])
                    } catch {
                        // No thread for it: side0 keeps serving it (and whatever attaches next).
                        cores[0].add(entry.handler)
                        placement.handlers[index].core = 0
                        placement.activeCount = 1
                        throw error
                    }
                }
                placement.handlers[index].core = core
                moves += 1
            }
            // Off the cores that are no longer active (or off the notify threads).
            for index in placement.handlers.indices where (placement.handlers[index].core ?? count) >= count {
                guard placement.handlers[index].core != nil || count > 0 else { continue }
                try move(index, to: placement.leastLoadedActive)
            }
            // Then from the busiest active core to the idlest until they differ by at most one.
            while count > 0 {
                let active = 0..<count
                guard let busiest = active.max(by: { placement.load($0) < placement.load($1) }),
                    let idlest = placement.leastLoadedActive,
                    placement.load(busiest) - placement.load(idlest) > 1,
                    let index = placement.handlers.firstIndex(where: { $0.core == busiest })
                else { break }
                try move(index, to: idlest)
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
        case .badCount(let count, let maximum):
            return
                """
                \(count) side cores: must be 0 to \(maximum), the engine's maximum; 0 serves queues with notify \
                threads
                """
        }
    }
}
