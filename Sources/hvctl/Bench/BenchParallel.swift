import Hypervisor

/// Runs one measurement per VM (or host loop) at the same time, each on its own thread, as `--vms`
/// asks: QEMU's VMs are processes of their own and the host loops are threads, where hvctl's VMs
/// share one runtime.
enum BenchParallel {
    /// `body(index)` for every index in 0..<count at once; their results in index order once all
    /// have ended. The first failure (by index) is thrown, after every thread has ended.
    static func run<T: Sendable>(
        _ count: Int, name: String, _ body: @escaping @Sendable (Int) throws -> T
    ) throws -> [T] {
        if count == 1 { return [try body(0)] }
        let results = Lock<[Int: Result<T, any Error>]>([:])
        var threads: [HostThread] = []
        // A thread that could not start leaves the started ones to end their runs, joined here.
        defer { for thread in threads { thread.join() } }
        for index in 0..<count {
            threads.append(
                try HostThread(name: "\(name)\(index)") {
                    let result = Result { try body(index) }
                    results.withLock { $0[index] = result }
                })
        }
        for thread in threads { thread.join() }
        threads = []
        let ended = results.withLock { $0 }
        return try (0..<count).map { index in
            guard let result = ended[index] else { throw BenchError("\(name)\(index) did not end") }
            return try result.get()
        }
    }
}
