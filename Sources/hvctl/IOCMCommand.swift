import ArgumentParser
import VMM

/// `hvctl iocm --socket PATH --side-cores N`: changes how many side cores serve the queues of a
/// running `hvctl run` (at most its --side-cores-max), moving queues between cores live.
struct IOCMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iocm",
        abstract: "Change the number of side cores of a running hvctl (queues move without losing a request).")

    @Option(help: "The --api-socket of the running hvctl.")
    var socket: String

    @Option(
        name: .customLong("side-cores"),
        help: ArgumentHelp(
            """
            How many side cores should serve the queues (0: notify threads), or auto (hvctl run --side-cores auto) to \
            hand the choice back to its iocm thread.
            """,
            valueName: "n|auto"))
    var sideCores: SideCoreCount

    func run() throws {
        let body: String
        switch sideCores {
        case .fixed(let count): body = "{\"count\":\(count)}"
        case .automatic: body = "{\"auto\":true}"
        }
        print(try apiRequest("PUT", "/api/v1/vmm.side-cores", body: Array(body.utf8), socket: socket))
    }
}
