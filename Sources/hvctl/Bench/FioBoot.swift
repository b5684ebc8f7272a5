/// The Linux bench guest `hvctl bench fio` boots: its kernel, initrd (the default initramfs with
/// fio and iperf3) and vCPUs.
struct FioGuest: Sendable {
    static let memoryMiB = 1024

    let kernel: String
    let initrd: String
    let cpus: Int
}

/// What one boot of the bench guest printed, gathered as its console lines come: each load's
/// exit status and output, and the console's last lines (to show why a boot gave no result).
struct FioBoot {
    static let tailLines = 30

    private var console = FioConsole()
    private(set) var outputs: [Int: String] = [:]
    private(set) var statuses: [Int: Int] = [:]
    private(set) var tail: [String] = []

    /// Takes one console line; returns its mark (the caller samples its counters there).
    mutating func take(_ line: String) -> FioConsole.Event? {
        tail.append(line)
        if tail.count > Self.tailLines { tail.removeFirst() }
        let event = console.take(line)
        switch event {
        case .end(let load, let status): statuses[load] = status
        case .output(let load, let text): outputs[load] = text
        case .start, .go, nil: break
        }
        return event
    }

    /// "; its console ended: " and its last lines, for an error.
    var consoleEnd: String { "; its console ended: " + tail.suffix(8).joined(separator: " | ") }

    /// Each load's measurement (load i is the guest's load i + 1); `who` names the VMM for errors.
    func measurements(_ loads: [FioLoad], who: String) throws -> [BenchMeasurement] {
        try loads.enumerated().map { index, load in
            guard let output = outputs[index + 1], let status = statuses[index + 1] else {
                throw BenchError(
                    "the bench guest under \(who) did not finish \(load.workload.rawValue) qd=\(load.qd)" + consoleEnd)
            }
            guard status == 0 else {
                let tool = load.workload.isNetwork ? "iperf3" : "fio"
                throw BenchError(
                    "\(tool) in the bench guest under \(who) failed (status \(status)): "
                        + output.split(whereSeparator: \.isNewline).filter { !$0.isEmpty }.suffix(4)
                        .joined(separator: " | "))
            }
            return try FioResult.measurement(output, workload: load.workload)
        }
    }
}
