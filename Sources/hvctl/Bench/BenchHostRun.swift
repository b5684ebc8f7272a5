import CKVM
import Glibc

/// `--peer host`: the same file read (and written) by the host itself through io_uring from one
/// thread at the same queue depth, verified as the guest verifies it (unless `verify` is false: a
/// file fio has written holds fio's data, not the pattern): the limit of one core on this machine.
enum BenchHostRun {
    static func measure(disk: String, blocks: UInt64, load: BenchLoad, verify: Bool = true) throws
        -> BenchMeasurement
    {
        let fd = open(disk, (load.workload.writePercent == 0 ? O_RDONLY : O_RDWR) | O_CLOEXEC)
        guard fd >= 0 else { throw BenchError("--disk \(disk): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var result = ckvm_host_bench_result()
        let status = ckvm_host_bench(
            fd, blocks, UInt32(load.qd), load.requests, (load.durationMilliseconds ?? 0) * 1_000_000,
            UInt32(load.blockSize), UInt32(load.workload.writePercent), verify ? 1 : 0, &result)
        guard status == 0 else {
            throw BenchError("the host's io_uring loop failed: \(String(cString: strerror(-status)))")
        }
        let seconds = Double(result.nanoseconds) / 1e9
        let requests = result.completed
        return BenchMeasurement(
            requests: requests, writes: result.writes, errors: result.errors,
            iops: seconds > 0 ? Double(requests) / seconds : 0,
            // Little's law: with qd always in flight, each request took qd / rate on average.
            latencyMeanNanoseconds: requests == 0 ? 0 : result.nanoseconds * UInt64(load.qd) / requests)
    }
}

/// A benchmark that could not run: one line, as hvctl's errors are.
struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
