import ArgumentParser
import Glibc

@main
struct HVCtl: ParsableCommand {
    /// hvctl's version (`hvctl --version`).
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "hvctl",
        abstract: "Sidecore: a KVM micro-hypervisor for small Linux guests.",
        version: HVCtl.version,
        subcommands: [
            Run.self, BenchGroup.self, BenchReportCommand.self, Check.self, Info.self, Pause.self, Resume.self,
            Shutdown.self, PowerButton.self,
            Stats.self,
            Metrics.self,
            IOCMCommand.self,
        ]
    )

    /// Parses and runs a subcommand. Errors become one line on stderr (`hvctl: ...`) and a
    /// non-zero exit; help and version output go to stdout as usual.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                if !message.isEmpty { print(message) }
            } else if !message.isEmpty {
                let firstLine = message.split(separator: "\n").first.map(String.init) ?? message
                let text = firstLine.hasPrefix("Error: ") ? String(firstLine.dropFirst(7)) : firstLine
                printError("hvctl: \(text)")
            }
            Glibc.exit(code.rawValue)
        }
    }
}

/// Writes one line to stderr (and, with --log-file, logs it there as an error).
func printError(_ line: String) {
    var text = line + "\n"
    text.withUTF8 { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
    if HVCtlLog.mirrorsToFile {
        logger.error("\(line.hasPrefix("hvctl: ") ? String(line.dropFirst(7)) : line)")
    }
}
