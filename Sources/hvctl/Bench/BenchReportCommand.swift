import ArgumentParser
import FoundationEssentials
import Glibc

/// `hvctl bench-report`: a record `hvctl bench --json` wrote, shown again without measuring: the
/// table (as a terminal table or Markdown, which is how docs/benchmarks.md is regenerated) and the
/// plot.
struct BenchReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-report", abstract: "Print the table (and draw the plot) of a saved hvctl bench record.")

    @Argument(help: ArgumentHelp("A record written by hvctl bench --json.", valueName: "file.json"))
    var record: String

    @Flag(help: "Print the table in Markdown, with the environment it was measured in.")
    var markdown = false

    @Option(help: ArgumentHelp("Draw the record's plot as SVG to this file.", valueName: "file.svg"))
    var plot: String?

    func run() throws {
        let plotFile = try plot.map { try OutputFile(flag: "--plot", path: $0) }
        let report = try Self.load(record)
        if markdown {
            let environment = report.environment
            print(
                "\(environment.cpuModel), \(environment.cpus) CPUs, Linux \(environment.hostKernel), KVM "
                    + "\(environment.kvmExecution); \(environment.hvctlVersion); \(environment.qemuVersion ?? "no QEMU")"
                    + "\n")
            for line in BenchTable.markdown(report) { print(line) }
        } else {
            for line in BenchTable.lines(report) { print(line) }
        }
        try plotFile?.write(bytes: Array(BenchPlot.svg(report).utf8))
    }

    /// The record at `path`; a file that is not one gets one line naming it.
    static func load(_ path: String) throws -> BenchReport {
        guard let file = fopen(path, "r") else {
            throw ValidationError("\(path): \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = fread(&chunk, 1, chunk.count, file)
            if count == 0 { break }
            bytes += chunk[0..<count]
            guard bytes.count <= 64 << 20 else {
                throw ValidationError("\(path): larger than 64 MiB, not a bench record")
            }
        }
        do {
            return try JSONDecoder().decode(BenchReport.self, from: Data(bytes))
        } catch {
            throw ValidationError("\(path): not an hvctl bench record (\(Self.reason(error)))")
        }
    }

    private static func reason(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let context):
            return "no \((context.codingPath + [key]).map(\.stringValue).joined(separator: "."))"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context),
            DecodingError.dataCorrupted(let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
        default:
            return "\(error)"
        }
    }
}
