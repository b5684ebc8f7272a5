import Hypervisor
import VirtioDevices

/// One side core in `--stats-json`: where it ran, what it cost, and how its polls went per queue.
public struct SideCoreReport: Encodable, Sendable {
    public struct Handler: Encodable, Sendable {
        public let name: String
        public let polls: UInt64
        /// Polls that found work.
        public let productivePolls: UInt64
        /// productivePolls / polls (0 before the first poll).
        public let pollHitRate: Double
        public let sleeps: UInt64

        init(_ counters: SideCore.HandlerCounters) {
            name = counters.name
            polls = counters.polls
            productivePolls = counters.productivePolls
            pollHitRate = counters.polls == 0 ? 0 : Double(counters.productivePolls) / Double(counters.polls)
            sleeps = counters.sleeps
        }
    }

    public let name: String
    /// Whether it serves queues now (see --side-cores-max and hvctl iocm).
    public let active: Bool
    public let cpu: Int32?
    /// Thread CPU time: close to zero for an idle core in hybrid mode, all of it in poll mode.
    public let cpuNanoseconds: UInt64?
    public let busyNanoseconds: UInt64
    /// Rounds that found work; busyNanoseconds over this is the pickup delay iocm watches.
    public let busyRounds: UInt64
    /// Handlers that found work, summed over those rounds (over busyRounds: how many shared one).
    public let productiveHandlerPolls: UInt64
    public let idleNanoseconds: UInt64
    public let sleeps: UInt64
    public let handlers: [Handler]

    /// Read while the cores still run (thread CPU clocks vanish with their threads).
    public static func collect(_ engine: SideCoreEngine) -> [SideCoreReport] {
        let active = engine.activeCount
        return engine.cores.enumerated().map { index, core in
            SideCoreReport(
                name: core.name, active: index < active, cpu: core.cpu, cpuNanoseconds: core.cpuNanoseconds,
                busyNanoseconds: core.statistics.busyNanoseconds.count, busyRounds: core.statistics.busyRounds.count,
                productiveHandlerPolls: core.statistics.productiveHandlerPolls.count,
                idleNanoseconds: core.statistics.idleNanoseconds.count,
                sleeps: core.statistics.sleeps.count,
                handlers: core.handlerCounters.map(Handler.init))
        }
    }
}
