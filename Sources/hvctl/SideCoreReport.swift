import VirtioDevices

/// One side core in `--stats-json`: where it ran, what it cost, and how its polls went per queue.
struct SideCoreReport: Encodable {
    struct Handler: Encodable {
        let name: String
        let polls: UInt64
        /// Polls that found work: polls × hit rate.
        let productivePolls: UInt64
        let sleeps: UInt64
    }

    let name: String
    /// Whether it serves queues now (see --side-cores-max and hvctl iocm).
    let active: Bool
    let cpu: Int32?
    /// Thread CPU time: close to zero for an idle core in hybrid mode, all of it in poll mode.
    let cpuNanoseconds: UInt64?
    let busyNanoseconds: UInt64
    let idleNanoseconds: UInt64
    let sleeps: UInt64
    let handlers: [Handler]

    /// Read while the cores still run (thread CPU clocks vanish with their threads).
    static func collect(_ engine: SideCoreEngine) -> [SideCoreReport] {
        let active = engine.activeCount
        return engine.cores.enumerated().map { index, core in
            SideCoreReport(name: core.name, active: index < active, cpu: core.cpu, cpuNanoseconds: core.cpuNanoseconds,
                           busyNanoseconds: core.statistics.busyNanoseconds.count, idleNanoseconds: core.statistics.idleNanoseconds.count,
                           sleeps: core.statistics.sleeps.count,
                           handlers: core.handlerCounters.map { Handler(name: $0.name, polls: $0.polls, productivePolls: $0.productivePolls, sleeps: $0.sleeps) })
        }
    }
}
