import Glibc
import Hypervisor

/// The host's end of a network bench's TAP: 169.254.77.1 with a fixed MAC, answering the iobench
/// guest (169.254.77.2, `guestMAC`) through a permanent neighbour entry, so nobody speaks ARP.
/// The TAP itself is made by whoever opens it (hvctl's NIC, or QEMU's `-netdev tap`) and goes
/// with them; nothing here outlives the run.
enum BenchTAP {
    static let hostMAC = "02:00:00:77:00:01"
    static let guestMAC = "02:00:00:77:00:02"
    static var hostMACHex: String { hostMAC.split(separator: ":").joined() }
    static var guestMACBytes: [UInt8] { guestMAC.split(separator: ":").map { UInt8($0, radix: 16) ?? 0 } }
    /// iproute2's ip (Debian's /sbin), or busybox's applet (the nested rig's L2 has it in /bin).
    static var ipTool: String {
        ["/sbin/ip", "/usr/sbin/ip", "/bin/ip", "/usr/bin/ip"].first { access($0, X_OK) == 0 } ?? "/sbin/ip"
    }

    /// A TAP name of this process for `peer` ("h" hvctl, "q" QEMU): at most 15 bytes.
    static func name(for peer: String) -> String { "hvb\(peer)\(getpid() % 10_000_000)" }

    /// Waits (up to 10 s) for `tap` to exist, then gives it the host's address and MAC, brings it
    /// up and (for a guest that speaks no ARP, as iobench does not) adds the guest's neighbour entry.
    static func configure(_ tap: String, guestSpeaksARP: Bool = false) throws {
        let deadline = MonotonicClock.now() + 10_000_000_000
        while access("/sys/class/net/\(tap)", F_OK) != 0 {
            guard MonotonicClock.now() < deadline else { throw BenchError("TAP \(tap) did not appear within 10 s") }
            usleep(10_000)
        }
        let neighbour = ["neigh", "replace", "169.254.77.2", "lladdr", guestMAC, "dev", tap, "nud", "permanent"]
        for arguments in [
            ["link", "set", "dev", tap, "address", hostMAC], ["addr", "add", "169.254.77.1/24", "dev", tap],
            ["link", "set", "dev", tap, "up"],
        ] + (guestSpeaksARP ? [] : [neighbour]) {
            let (output, status) = try BenchProcess.runWithStatus(ipTool, arguments)
            guard status == 0 else {
                throw BenchError(
                    "setting up TAP \(tap): ip \(arguments.joined(separator: " ")): "
                        + output.split(whereSeparator: \.isNewline).joined(separator: "; "))
            }
        }
    }
}
