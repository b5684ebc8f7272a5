import Glibc
import Logging

/// hvctl's log backend for swift-log: one line per event, `TIME LEVEL hvctl: message key=value...`
/// (UTC, microseconds), written whole with one write(2) to stderr or to the `--log-file`.
struct LogLines: LogHandler {
    /// Where the lines go: stderr, or a file opened for appending.
    final class Destination: Sendable {
        let fd: Int32
        let isFile: Bool

        static let standardError = Destination(fd: STDERR_FILENO, isFile: false)

        private init(fd: Int32, isFile: Bool) {
            self.fd = fd
            self.isFile = isFile
        }

        /// Opens (creates, appends to) `path`; nil and errno when it cannot.
        static func file(_ path: String) -> Destination? {
            let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            return fd < 0 ? nil : Destination(fd: fd, isFile: true)
        }

        func write(_ line: String) {
            var text = line
            text.withUTF8 { _ = Glibc.write(fd, $0.baseAddress, $0.count) }
        }
    }

    let destination: Destination
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var line = "\(Self.timestamp()) \(event.level) hvctl: \(event.message)"
        let fields = metadata.merging(event.metadata ?? [:]) { $1 }
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) { line += " \(key)=\(value)" }
        destination.write(line + "\n")
    }

    /// Now as `2026-12-05T06:40:01.123456Z`.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var time = tm()
        var seconds = now.tv_sec
        gmtime_r(&seconds, &time)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let micros = String(now.tv_nsec / 1000)
        return "\(time.tm_year + 1900)-\(two(time.tm_mon + 1))-\(two(time.tm_mday))T\(two(time.tm_hour)):"
            + "\(two(time.tm_min)):\(two(time.tm_sec)).\(String(repeating: "0", count: 6 - micros.count))\(micros)Z"
    }
}

/// The process's logging, set up once by `hvctl run` from --log-level, -v and --log-file.
enum HVCtlLog {
    nonisolated(unsafe) private static var destination = LogLines.Destination.standardError

    /// Routes swift-log to `destination` at `level`. Call once, before any thread logs.
    static func bootstrap(level: Logger.Level, destination: LogLines.Destination) {
        self.destination = destination
        LoggingSystem.bootstrap { _ in LogLines(destination: destination, logLevel: level) }
    }

    /// With --log-file, the command's own result lines (errors, a triple fault) go there too.
    static var mirrorsToFile: Bool { destination.isFile }
}

/// hvctl's logger (the backend is `LogLines` once `HVCtlLog.bootstrap` ran).
let logger = Logger(label: "hvctl")
