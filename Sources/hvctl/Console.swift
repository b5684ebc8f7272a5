import Glibc
import Hypervisor

/// Writes guest console bytes to stdout, unbuffered.
enum ConsoleOutput {
    static func write(_ byte: UInt8) {
        var byte = byte
        while Glibc.write(STDOUT_FILENO, &byte, 1) < 0 && errno == EINTR {}
    }
}

/// Forwards stdin to the guest's UART. On a terminal it switches stdin to raw mode (restored
/// by `stop()`) and watches for the escape Ctrl-A x; a second Ctrl-A sends a literal Ctrl-A.
/// A terminal whose foreground is another process group (`hvctl run ... &`, `timeout`) is left
/// alone: changing its modes would stop hvctl with SIGTTOU and reading it with SIGTTIN, freezing
/// the guest, so the guest gets no input then.
final class Console: Sendable {
    static let escapeByte: UInt8 = 0x01

    private let onEscape: @Sendable () -> Void
    private let savedTerminal = Lock<termios?>(nil)
    private let thread = WorkerThread()
    /// Ends the forwarding thread, which waits for stdin or this.
    private let stopRequest: EventFD

    init(onEscape: @escaping @Sendable () -> Void) throws {
        self.onEscape = onEscape
        stopRequest = try EventFD()
    }

    func start(forwardingTo serial: Serial16550) throws {
        let isTerminal = isatty(STDIN_FILENO) == 1
        if isTerminal && tcgetpgrp(STDIN_FILENO) != getpgrp() { return }
        if isTerminal {
            var attributes = termios()
            if tcgetattr(STDIN_FILENO, &attributes) == 0 {
                savedTerminal.withLock { $0 = attributes }
                cfmakeraw(&attributes)
                attributes.c_oflag |= tcflag_t(OPOST | ONLCR)  // keep host-side newline handling for our own messages
                tcsetattr(STDIN_FILENO, TCSANOW, &attributes)
            }
        }
        try thread.start(name: "console") { [self] in
            var buffer = [UInt8](repeating: 0, count: 512)
            var escapePending = false
            var waits = [
                pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0),
                pollfd(fd: stopRequest.fd, events: Int16(POLLIN), revents: 0),
            ]
            while true {
                if poll(&waits, 2, -1) < 0 {
                    if errno == EINTR { continue }
                    return
                }
                if waits[1].revents != 0 { return }
                let count = read(STDIN_FILENO, &buffer, buffer.count)
                if count < 0 && (errno == EINTR || errno == EAGAIN) { continue }
                if count <= 0 { return }  // end of input: the guest keeps running
                var bytes: [UInt8] = []
                for byte in buffer[0..<count] {
                    if isTerminal && escapePending {
                        escapePending = false
                        if byte == UInt8(ascii: "x") { onEscape(); return }
                        bytes.append(byte == Self.escapeByte ? Self.escapeByte : byte)
                    } else if isTerminal && byte == Self.escapeByte {
                        escapePending = true
                    } else {
                        bytes.append(byte)
                    }
                }
                serial.enqueueInput(bytes)
            }
        }
    }

    /// Ends the forwarding, joins its thread and gives the terminal back its modes.
    func stop() {
        stopRequest.signal()
        thread.join()
        if var saved = savedTerminal.withLock({ $0 }) { tcsetattr(STDIN_FILENO, TCSANOW, &saved) }
    }
}
