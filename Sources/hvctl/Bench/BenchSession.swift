import ArgumentParser
import Glibc
import Hypervisor
import VMM

/// What a bench command holds while it measures: the disks (scratch files removed at the end),
/// the VMM runtime or child processes running now (so Ctrl-C can end them), and whether a signal
/// came; then the table, the record and the plot of whatever was measured, and the exit status.
final class BenchSession: Sendable {
    /// The disk of each VM (and of each host loop).
    let disks: [BenchDisk]
    let runningVMM = Lock<VMMRuntime?>(nil)
    let runningChildren = Lock<Set<Int32>>([])
    let interrupted = Lock<Int32?>(nil)
    let progress = BenchProgress()

    var isInterrupted: Bool { interrupted.withLock { $0 } != nil }

    private init(disks: [BenchDisk]) {
        self.disks = disks
    }

    /// Sets a session up (a bad --json or --plot path fails here, before minutes of measuring),
    /// lets `measure` fill `report` in, then prints the table and writes the record and the plot
    /// (also when `measure` failed after some cells were measured: then its error follows); exits
    /// non-zero when a signal stopped it, a request failed or `measure` threw. `command` names it in
    /// errors.
    static func run(
        _ command: String, options: BenchTargetOptions, vms: Int, report: BenchReport,
        measure: (BenchSession, inout BenchReport) throws -> Void
    ) throws {
        // The VMs' own events (a device's activation, say) stay out of the table; warnings show.
        HVCtlLog.bootstrap(level: .warning, destination: .standardError)
        let jsonFile = try options.json.map { try OutputFile(flag: "--json", path: $0) }
        let plotFile = try options.plot.map { try OutputFile(flag: "--plot", path: $0) }
        SignalWatcher.blockInThisThread()
        let scratch = try BenchScratch(disk: options.disk, null: options.null, count: vms)
        defer { scratch.remove() }
        let session = BenchSession(disks: scratch.disks)
        let signals = try SignalWatcher { [session] signal in
            session.interrupted.withLock { $0 = signal }
            session.runningVMM.withLock { $0 }?.stop(.stopped(signal: signal))
            for pid in session.runningChildren.withLock({ $0 }) { kill(pid, SIGKILL) }
        }
        defer { signals.stop() }

        var report = report
        // A run that fails after others finished still shows and records them, then says why it ended.
        var failure: Error?
        do {
            try measure(session, &report)
        } catch {
            failure = error
        }
        session.progress.clear()
        if !report.cells.isEmpty || failure == nil {
            for line in BenchTable.lines(report) { print(line) }
            try jsonFile?.write(report)
            try plotFile?.write(bytes: Array(BenchPlot.svg(report).utf8))
        }
        if let failure { throw failure }
        if let signal = session.interrupted.withLock({ $0 }) {
            printError("hvctl: \(command) stopped by signal \(signal); the table holds what was measured")
            throw ExitCode(128 + signal)
        }
        let errors = report.cells.flatMap(\.runs).reduce(0) { $0 + $1.errors }
        if errors > 0 {
            printError("hvctl: \(command): \(errors) requests failed or read the wrong data")
            throw ExitCode.failure
        }
    }
}
