import CKVM
import Glibc

/// `--peer host`: the same file read by the host itself through io_uring from one thread at the
/// same queue depth, verified as the guest verifies it: the limit of one core on this machine.
enum BenchHostRun {
    static func measure(disk: String, blocks: UInt64, qd: Int, requests: UInt64) throws -> BenchMeasurement {
        let fd = open(disk, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw BenchError("--disk \(disk): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var nanoseconds: UInt64 = 0
        var errors: UInt64 = 0
        let status = ckvm_host_bench_reads(fd, blocks, UInt32(qd), requests, 1, &nanoseconds, &errors)
        guard status == 0 else {
            throw BenchError("the host's io_uring loop failed: \(String(cString: strerror(-status)))")
        }
        let seconds = Double(nanoseconds) / 1e9
        return BenchMeasurement(
            requests: requests, errors: errors, iops: seconds > 0 ? Double(requests) / seconds : 0,
            // Little's law: with qd always in flight, each request took qd / rate on average.
            latencyMeanNanoseconds: requests == 0 ? 0 : nanoseconds * UInt64(qd) / requests)
    }
}

/// A benchmark that could not run: one line, as hvctl's errors are.
struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
