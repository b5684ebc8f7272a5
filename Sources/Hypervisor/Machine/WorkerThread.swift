/// The slot of a long-lived worker thread (side core, notify runner, I/O core manager,
/// redirector): started once, joined once by whichever thread stops its owner, and readable
/// meanwhile from any thread (CPU time for statistics) without racing the join.
public final class WorkerThread: Sendable {
    private let thread = Lock<HostThread?>(nil)

    public init() {}

    /// Starts `body` on a thread named `name`.
    public func start(name: String, body: @escaping @Sendable () -> Void) throws {
        let started = try HostThread(name: name, body: body)
        thread.withLock { $0 = started }
    }

    /// Waits for the thread to end (the owner has told it to stop); later calls return at once.
    public func join() {
        let running = thread.withLock { thread -> HostThread? in
            defer { thread = nil }
            return thread
        }
        running?.join()
    }

    /// Runs `body` with the thread while it has not been joined, holding off `join` meanwhile.
    public func withRunningThread<Result>(_ body: (HostThread) -> Result) -> Result? {
        thread.withLock { thread in thread.map(body) }
    }
}
