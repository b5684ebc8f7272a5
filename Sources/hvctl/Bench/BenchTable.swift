/// The table `hvctl bench` prints: a row per target and load (workload, request size, queue depth)
/// with the median IOPS, its spread over the repeats, latency (the mean, and percentiles of every
/// repeat's requests together), exits and kicks per request, and the ratios against QEMU (at its
/// default polling limit, and at the best of those measured) and the host under the same load.
enum BenchTable {
    /// Columns padded to line up, for a terminal.
    static func lines(_ report: BenchReport) -> [String] {
        let rows = rows(report)
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { $0.element.padding(widths[$0.offset] + 2) }.joined()
        }
    }

    /// A Markdown table, for docs/benchmarks.md.
    static func markdown(_ report: BenchReport) -> [String] {
        let rows = rows(report)
        let line = { (cells: [String]) in "| " + cells.joined(separator: " | ") + " |" }
        return [line(rows[0]), line(rows[0].map { _ in "---" })] + rows.dropFirst().map(line)
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
            rows.append([
                cell.target, cell.workload, BenchBlockSize.label(cell.blockSize), "\(cell.qd)", "\(Int(median))",
                "\(Int(cell.iops.min))-\(Int(cell.iops.max))",
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
