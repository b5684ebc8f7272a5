import Glibc

/// The live progress line on stderr: rewritten in place on a terminal, a line per finished run
/// otherwise (so a log keeps them).
struct BenchProgress {
    private let terminal = isatty(STDERR_FILENO) == 1

    func show(_ text: String, done: Bool = false) {
        if terminal {
            write("\r\u{1B}[K" + text)
        } else if done {
            write("bench: " + text + "\n")
        }
    }

    func clear() {
        if terminal { write("\r\u{1B}[K") }
    }

    private func write(_ text: String) {
        var text = text
        text.withUTF8 { _ = Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
}
