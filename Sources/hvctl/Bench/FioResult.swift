import FoundationEssentials
import VMM

/// A load's output from the bench guest as a measurement: fio's JSON (`--output-format=json
/// --unified_rw_reporting=both --lat_percentiles=1`: its "mixed" section is reads and writes
/// together, with percentiles of each request's whole latency) or iperf3's (`-J`).
enum FioResult {
    private struct FioOutput: Decodable {
        struct Job: Decodable {
            struct Direction: Decodable {
                struct Latency: Decodable {
                    let mean: Double
                    let max: Double
                    let percentile: [String: Double]?
                }
                let totalIos: UInt64
                let iops: Double
                let latNs: Latency
            }
            let error: Int
            let mixed: Direction
            let write: Direction
        }
        let jobs: [Job]
    }

    private struct IperfOutput: Decodable {
        struct End: Decodable {
            struct Sum: Decodable {
                let seconds: Double
                let bytes: Double
                let bitsPerSecond: Double
            }
            let sumReceived: Sum?
        }
        let end: End?
        let error: String?
    }

    /// Both tools' keys are snake_case.
    private static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }

    /// Whether figures the guest printed can be counted and converted: finite, not negative, and
    /// below 2^53 (where a Double stops holding every whole number; no run comes near it).
    private static func plausible(_ values: Double...) -> Bool {
        values.allSatisfy { $0.isFinite && $0 >= 0 && $0 < 0x1p53 }
    }

    /// The measurement of one load's `output`; throws with the output's first line when it is not
    /// what the tool prints on success.
    static func measurement(_ output: String, workload: FioWorkload) throws -> BenchMeasurement {
        let bytes = Data(output.utf8)
        let firstLine = output.split(whereSeparator: \.isNewline).first.map(String.init) ?? "(no output)"
        if workload.isNetwork {
            guard let result = try? decoder.decode(IperfOutput.self, from: bytes) else {
                throw BenchError("iperf3 in the guest printed no result: \(firstLine.prefix(200))")
            }
            if let error = result.error { throw BenchError("iperf3 in the guest failed: \(error.prefix(200))") }
            guard let received = result.end?.sumReceived, received.seconds > 0 else {
                throw BenchError("iperf3 in the guest reported no stream")
            }
            guard plausible(received.seconds, received.bytes, received.bitsPerSecond) else {
                throw BenchError("iperf3 in the guest reported figures out of range: \(firstLine.prefix(200))")
            }
            // A request is one of iperf3's writes; what reached the host counts.
            let writes = received.bytes / Double(FioWorkload.streamWriteBytes)
            var measurement = BenchMeasurement(
                requests: UInt64(max(writes, 0).rounded()), writes: 0, errors: 0, iops: writes / received.seconds,
                latencyMeanNanoseconds: 0)
            measurement.bitsPerSecond = received.bitsPerSecond
            return measurement
        }
        guard let job = (try? decoder.decode(FioOutput.self, from: bytes))?.jobs.first else {
            throw BenchError("fio in the guest printed no result: \(firstLine.prefix(200))")
        }
        let all = job.mixed
        guard plausible(all.iops) else {
            throw BenchError("fio in the guest reported IOPS out of range: \(all.iops)")
        }
        let latency = all.latNs
        func percentile(_ key: String) -> UInt64 {
            BenchMeasurement.wholeNanoseconds(latency.percentile?[key] ?? 0)
        }
        let mean = BenchMeasurement.wholeNanoseconds(latency.mean)
        var measurement = BenchMeasurement(
            requests: all.totalIos, writes: job.write.totalIos, errors: job.error == 0 ? 0 : 1, iops: all.iops,
            latencyMeanNanoseconds: mean)
        measurement.latency = LatencySummary(
            count: all.totalIos, meanNanoseconds: mean, p50Nanoseconds: percentile("50.000000"),
            p90Nanoseconds: percentile("90.000000"), p99Nanoseconds: percentile("99.000000"),
            p999Nanoseconds: percentile("99.900000"), maxNanoseconds: BenchMeasurement.wholeNanoseconds(latency.max))
        return measurement
    }
}
