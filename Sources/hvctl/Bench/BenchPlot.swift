import Glibc
import VMM

/// `hvctl bench --plot FILE.svg`: the run drawn so it reads without the table. Left, IOPS against
/// queue depth, one line per series (a target: hvctl's modes and the peers; with several workloads
/// or request sizes, a target under one of them) through the median of its repeats, with a bar
/// from the slowest to the fastest repeat. Right, the latency distribution of every configuration
/// on a log scale: the guest-timed p50, p99, p99.9 and max of all its repeats' requests, and the
/// mean, so tails and peers compare at a glance.
enum BenchPlot {
    static let width = 1100.0
    static let chartHeight = 320.0
    static let margin = (left: 70.0, top: 50.0, right: 20.0, bottom: 50.0)
    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]

    static func svg(_ report: BenchReport) -> String {
        let targets = report.cells.map(report.series).uniqued()
        let color = { (target: String) in colors[(targets.firstIndex(of: target) ?? 0) % colors.count] }
        let latencyRows = report.cells.count
        let height = max(chartHeight, 24 + Double(latencyRows) * 18) + margin.top + margin.bottom + 30
        var svg = SVG(width: width, height: height)
        let title =
            "hvctl bench: \(report.options.workloads.joined(separator: ", ")) of "
            + "\(report.options.blockSizes.map(BenchBlockSize.label).joined(separator: ", ")), "
            + "\(report.options.requests) per run, \(report.options.repeat) "
            + "run(s) per cell, \(report.options.disk) — \(report.environment.cpuModel), \(report.environment.cpus) CPUs"
        svg.text(title, x: margin.left, y: 24, size: 14, weight: "bold")
        drawIOPS(report, targets: targets, color: color, into: &svg)
        drawLatency(report, color: color, into: &svg)
        // Legend under both charts.
        var x = margin.left
        let legendY = height - 16
        for target in targets {
            svg.rect(x: x, y: legendY - 9, width: 12, height: 10, fill: color(target))
            svg.text(target, x: x + 16, y: legendY, size: 12)
            x += 24 + Double(target.count) * 7.5
        }
        return svg.finished
    }

    /// Left half: IOPS (median, min-max bar) per queue depth, depths evenly spaced.
    private static func drawIOPS(
        _ report: BenchReport, targets: [String], color: (String) -> String, into svg: inout SVG
    ) {
        let depths = report.cells.map(\.qd).uniqued().sorted()
        let area = (x: margin.left, y: margin.top, width: width / 2 - margin.left - 30, height: chartHeight)
        let top = niceCeiling(report.cells.map(\.iops.max).max() ?? 1)
        let xOf = { (qd: Int) -> Double in
            let index = Double(depths.firstIndex(of: qd) ?? 0)
            return area.x + (depths.count == 1 ? area.width / 2 : index * area.width / Double(depths.count - 1))
        }
        let yOf = { (iops: Double) in area.y + area.height - iops / top * area.height }
        svg.text("IOPS by queue depth (median; bar: min to max)", x: area.x, y: area.y - 12, size: 13)
        for tick in 0...4 {
            let value = top * Double(tick) / 4
            svg.line(x1: area.x, y1: yOf(value), x2: area.x + area.width, y2: yOf(value), stroke: "#ddd")
            svg.text(compact(value), x: area.x - 8, y: yOf(value) + 4, size: 11, anchor: "end")
        }
        for qd in depths {
            svg.text("\(qd)", x: xOf(qd), y: area.y + area.height + 18, size: 11, anchor: "middle")
        }
        svg.text("queue depth", x: area.x + area.width / 2, y: area.y + area.height + 36, size: 12, anchor: "middle")
        for target in targets {
            let cells = report.cells.filter { report.series($0) == target }.sorted { $0.qd < $1.qd }
            let points = cells.map { (xOf($0.qd), yOf($0.iops.median)) }
            svg.polyline(points, stroke: color(target))
            for cell in cells {
                let x = xOf(cell.qd)
                svg.line(x1: x, y1: yOf(cell.iops.min), x2: x, y2: yOf(cell.iops.max), stroke: color(target), width: 3)
                svg.circle(x: x, y: yOf(cell.iops.median), radius: 3.5, fill: color(target))
            }
        }
    }

    /// Right half: one row per configuration, its latencies on a log axis.
    private static func drawLatency(_ report: BenchReport, color: (String) -> String, into svg: inout SVG) {
        let rows = report.cells.map { cell -> (label: String, target: String, marks: [(String, UInt64)]) in
            var marks: [(String, UInt64)] = [("mean", UInt64(cell.latencyMeanNanoseconds.median))]
            if let latency = cell.latency {
                marks += [
                    ("p50", latency.p50Nanoseconds), ("p99", latency.p99Nanoseconds),
                    ("p99.9", latency.p999Nanoseconds), ("max", latency.maxNanoseconds),
                ]
            }
            return ("\(report.series(cell)) qd=\(cell.qd)", report.series(cell), marks.filter { $0.1 > 0 })
        }
        let values = rows.flatMap { $0.marks.map { Double($0.1) } }
        let low = pow10Floor(values.min() ?? 1000)
        let high = max(pow10Ceiling(values.max() ?? 1_000_000), low * 10)
        let area = (x: width / 2 + 140, y: margin.top, width: width / 2 - 140 - margin.right)
        let decades = log10(high / low)
        let xOf = { (nanoseconds: Double) in area.x + log10(nanoseconds / low) / decades * area.width }
        let rowHeight = 18.0
        let bottom = area.y + 12 + Double(rows.count) * rowHeight
        svg.text(
            "latency per request, guest-timed (● p50  ▲ p99  ◆ p99.9  ✕ max  | mean)", x: area.x - 130,
            y: area.y - 12,
            size: 13)
        var tick = low
        while tick <= high * 1.0001 {
            svg.line(x1: xOf(tick), y1: area.y, x2: xOf(tick), y2: bottom, stroke: "#ddd")
            svg.text(duration(tick), x: xOf(tick), y: bottom + 16, size: 11, anchor: "middle")
            tick *= 10
        }
        for (index, row) in rows.enumerated() {
            let y = area.y + 12 + Double(index) * rowHeight + rowHeight / 2
            svg.text(row.label, x: area.x - 8, y: y + 4, size: 11, anchor: "end")
            let marks = Dictionary(row.marks, uniquingKeysWith: { first, _ in first })
            if let p50 = marks["p50"], let maximum = marks["max"] {
                svg.line(
                    x1: xOf(Double(p50)), y1: y, x2: xOf(Double(maximum)), y2: y, stroke: color(row.target), width: 1)
            }
            for (name, value) in row.marks {
                let x = xOf(Double(value))
                switch name {
                case "p50": svg.circle(x: x, y: y, radius: 4, fill: color(row.target))
                case "p99": svg.polygon([(x, y - 5), (x - 5, y + 4), (x + 5, y + 4)], fill: color(row.target))
                case "p99.9": svg.polygon([(x, y - 5), (x - 5, y), (x, y + 5), (x + 5, y)], fill: color(row.target))
                case "max": svg.text("✕", x: x, y: y + 4, size: 12, anchor: "middle", fill: color(row.target))
                default: svg.line(x1: x, y1: y - 7, x2: x, y2: y + 7, stroke: color(row.target), width: 2)
                }
            }
        }
    }

    /// The smallest 1, 2 or 5 times a power of ten at or above `value`.
    static func niceCeiling(_ value: Double) -> Double {
        guard value > 0 else { return 1 }
        let power = pow10Floor(value)
        for step in [1.0, 2, 5, 10] where step * power >= value { return step * power }
        return 10 * power
    }

    static func pow10Floor(_ value: Double) -> Double { value > 0 ? pow(10, floor(log10(value))) : 1 }
    static func pow10Ceiling(_ value: Double) -> Double { value > 0 ? pow(10, ceil(log10(value))) : 1 }

    /// 12000 → "12k", 1500000 → "1.5M".
    static func compact(_ value: Double) -> String {
        if value >= 1_000_000 { return SVG.number(value / 1_000_000) + "M" }
        if value >= 1000 { return SVG.number(value / 1000) + "k" }
        return SVG.number(value)
    }

    /// 100 → "100 ns", 1e4 → "10 µs", 1e7 → "10 ms".
    static func duration(_ nanoseconds: Double) -> String {
        if nanoseconds >= 1e9 { return compact(nanoseconds / 1e9) + " s" }
        if nanoseconds >= 1e6 { return compact(nanoseconds / 1e6) + " ms" }
        if nanoseconds >= 1e3 { return compact(nanoseconds / 1e3) + " µs" }
        return compact(nanoseconds) + " ns"
    }
}

extension BenchReport {
    /// The line a cell belongs to: its target, and its workload and request size when the run had
    /// more than one.
    func series(_ cell: Cell) -> String {
        let loads = Set(cells.map { "\($0.workload) \($0.blockSize)" })
        return loads.count > 1 ? "\(cell.target) \(cell.workload) \(BenchBlockSize.label(cell.blockSize))" : cell.target
    }
}

extension Array where Element: Hashable {
    /// The elements in their first order, each once.
    fileprivate func uniqued() -> [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}
