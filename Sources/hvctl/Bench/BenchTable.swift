/// The table `hvctl bench` prints: a row per target and load (workload, request size, queue depth)
/// with the median IOPS, its spread over the repeats, latency (the mean, and percentiles of every
/// repeat's requests together), exits and kicks per request, and the ratios against QEMU (at its
/// default polling limit, and at the best of those measured) and the host under the same load.
enum BenchTable {
    /// Columns padded to line up, for a terminal; the redirect workload's phases in a second table.
    static func lines(_ report: BenchReport) -> [String] {
        func padded(_ rows: [[String]]) -> [String] {
            let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
            return rows.map { row in
                row.enumerated().map { $0.element.padding(widths[$0.offset] + 2) }.joined()
            }
        }
        let redirect = redirectRows(report)
        return padded(rows(report)) + (redirect.count > 1 ? [""] + padded(redirect) : [])
    }

    /// Markdown tables, for docs/benchmarks.md.
    static func markdown(_ report: BenchReport) -> [String] {
        func table(_ rows: [[String]]) -> [String] {
            let line = { (cells: [String]) in "| " + cells.joined(separator: " | ") + " |" }
            return [line(rows[0]), line(rows[0].map { _ in "---" })] + rows.dropFirst().map(line)
        }
        let redirect = redirectRows(report)
        return table(rows(report)) + (redirect.count > 1 ? [""] + table(redirect) : [])
    }

    /// The redirect workload's cells: where each phase's interrupts went (vCPU 0 / vCPU 1) and its
    /// reads' mean latency, vCPU 1's wake-ups from halt and the redirected share, from the run of
    /// median IOPS; and each phase's latency against QEMU's (its median run's).
    static func redirectRows(_ report: BenchReport) -> [[String]] {
        var rows = [
            [
                "target", "halted: irqs vCPU0/vCPU1", "halted: lat us", "spinning: irqs vCPU0/vCPU1",
                "spinning: lat us",
                "exits/req", "vCPU1 wake-ups/req", "redirected", "lat x qemu halted", "lat x qemu spinning",
            ]
        ]
        func medianRun(_ cell: BenchReport.Cell) -> BenchMeasurement? {
            cell.runs.isEmpty ? nil : cell.runs.sorted { $0.iops < $1.iops }[cell.runs.count / 2]
        }
        let qemu = report.cells.first { $0.target == "qemu" && $0.workload == "redirect" }.flatMap(medianRun)?.redirect
        for cell in report.cells where cell.workload == "redirect" {
            guard let run = medianRun(cell), let figures = run.redirect else { continue }
            func microseconds(_ phase: RedirectFigures.Phase) -> String {
                format(Double(phase.latencyMeanNanoseconds) / 1000, digits: 1)
            }
            func ratio(_ phase: RedirectFigures.Phase, _ peer: RedirectFigures.Phase?) -> String {
                guard let peer, peer.latencyMeanNanoseconds > 0, cell.target != "qemu" else { return "-" }
                return format(Double(phase.latencyMeanNanoseconds) / Double(peer.latencyMeanNanoseconds), digits: 2)
            }
            let redirected = figures.redirectedInterrupts.map { "\($0)/\(figures.deviceInterrupts ?? 0)" } ?? "-"
            rows.append([
                cell.target, "\(figures.halted.interruptsOnVCPU0)/\(figures.halted.interruptsOnVCPU1)",
                microseconds(figures.halted),
                "\(figures.spinning.interruptsOnVCPU0)/\(figures.spinning.interruptsOnVCPU1)",
                microseconds(figures.spinning), run.exitsPerRequest.map { format($0, digits: 3) } ?? "-",
                figures.secondVCPUWakeupsPerRequest.map { format($0, digits: 3) } ?? "-", redirected,
                ratio(figures.halted, qemu?.halted), ratio(figures.spinning, qemu?.spinning),
            ])
        }
        return rows
    }

    /// The header and a row per cell.
    static func rows(_ report: BenchReport) -> [[String]] {
        let header = [
            "target", "workload", "bs", "qd", "IOPS median", "min-max", "lat mean us", "p50 us", "p99 us", "p99.9 us",
            "exits/req", "kicks/req", "x qemu", "x qemu best", "x host",
        ]
        var rows: [[String]] = [header]
        for cell in report.cells {
            let median = cell.iops.median
            func ratio(_ other: BenchReport.Cell?) -> String {
                guard let other, other.target != cell.target, other.iops.median > 0 else { return "-" }
                return format(median / other.iops.median, digits: 2)
            }
            func peer(_ name: String) -> BenchReport.Cell? {
                report.cells.first { $0.target == name && $0.sameLoad(as: cell) }
            }
            let bestQEMU =
                cell.isQEMU
                ? nil
                : report.cells.filter { $0.isQEMU && $0.sameLoad(as: cell) }
                    .max { $0.iops.median < $1.iops.median }
            let latency = cell.latency
            func microseconds(_ nanoseconds: UInt64?) -> String {
                nanoseconds.map { format(Double($0) / 1000, digits: 1) } ?? "-"
            }
            let exits = cell.runs.compactMap(\.exitsPerRequest)
            let kicks = cell.runs.compactMap(\.kicksPerRequest)
            // A TCP stream's rate is its bits per second.
            let bits = cell.runs.compactMap(\.bitsPerSecond)
            let megabits = BenchReport.Spread(bits.map { $0 / 1e6 })
            rows.append([
                cell.target, cell.workload, BenchBlockSize.label(cell.blockSize), "\(cell.qd)",
                bits.isEmpty ? whole(median) : "\(whole(megabits.median)) Mbit/s",
                bits.isEmpty
                    ? "\(whole(cell.iops.min))-\(whole(cell.iops.max))"
                    : "\(whole(megabits.min))-\(whole(megabits.max))",
                // A stream times no request (frames/s only).
                cell.latencyMeanNanoseconds.max > 0
                    ? format(cell.latencyMeanNanoseconds.median / 1000, digits: 1) : "-",
                microseconds(latency?.p50Nanoseconds), microseconds(latency?.p99Nanoseconds),
                microseconds(latency?.p999Nanoseconds),
                exits.isEmpty ? "-" : format(BenchReport.Spread(exits).median, digits: 3),
                kicks.isEmpty ? "-" : format(BenchReport.Spread(kicks).median, digits: 3),
                ratio(peer("qemu")), ratio(bestQEMU), ratio(peer("host")),
            ])
        }
        return rows
    }

    /// `value` with `digits` decimals.
    /// A rate as a whole number. The figures come from guests' output: one too large for an Int
    /// (or not finite) is shown as it is rather than trapping in the conversion.
    static func whole(_ value: Double) -> String {
        value.isFinite && value.magnitude < 0x1p62 ? "\(Int(value))" : "\(value)"
    }

    static func format(_ value: Double, digits: Int) -> String {
        let scale = Double([1, 10, 100, 1000][min(max(digits, 0), 3)])
        let rounded = (value * scale).rounded() / scale
        var text = "\(rounded)"
        if let dot = text.firstIndex(of: ".") {
            let decimals = text.distance(from: dot, to: text.endIndex) - 1
            if decimals < digits { text += String(repeating: "0", count: digits - decimals) }
        } else if digits > 0 {
            text += "." + String(repeating: "0", count: digits)
        }
        return text
    }
}
