import VMM

/// One run of one cell of `hvctl bench`: what the guest (or the host loop) measured, and for
/// hvctl what its own statistics add between the guest's start and end marks.
struct BenchMeasurement: Encodable, Sendable {
    var requests: UInt64
    var errors: UInt64
    /// Requests (reads) per second over the measured loop.
    var iops: Double
    /// As the guest timed each request (the host loop: elapsed × qd / requests).
    var latencyMeanNanoseconds: UInt64
    var latencyP50Nanoseconds: UInt64?
    var latencyP99Nanoseconds: UInt64?
    var latencyMaxNanoseconds: UInt64?
    /// KVM's own "exits" over every vCPU between the marks, per request (hvctl).
    var exitsPerRequest: Double?
    /// The guest's doorbell writes per request.
    var kicksPerRequest: Double?
    /// Completion interrupts the device raised per request (hvctl).
    var interruptsPerRequest: Double?
    /// Side-core thread CPU time per request, in nanoseconds (hvctl poll and hybrid modes).
    var sideCoreNanosecondsPerRequest: Double?
    /// Requests per second of side-core CPU time.
    var iopsPerSideCoreSecond: Double?
    /// The device's own view: each request's time from its available ring to its used ring (hvctl).
    var deviceLatency: LatencySummary?
}

/// The fields of an `iobench: result ...` console line.
struct IOBenchResult {
    let fields: [String: UInt64]

    /// Parses the line's `key=value` fields; nil when `line` is not a result line.
    init?(line: String) {
        let words = line.split(separator: " ")
        guard
            let start = words.indices.first(where: {
                words[$0] == "iobench:" && $0 + 1 < words.count && words[$0 + 1] == "result"
            })
        else { return nil }
        var fields: [String: UInt64] = [:]
        for field in words[(start + 2)...] {
            let parts = field.split(separator: "=", maxSplits: 1)
            if parts.count == 2, let value = UInt64(parts[1]) { fields[String(parts[0])] = value }
        }
        self.fields = fields
    }

    /// The guest's own figures as a measurement.
    var measurement: BenchMeasurement {
        let requests = fields["requests"] ?? 0
        return BenchMeasurement(
            requests: requests, errors: fields["errors"] ?? 0, iops: Double(fields["iops"] ?? 0),
            latencyMeanNanoseconds: fields["lat_avg_ns"] ?? 0, latencyP50Nanoseconds: fields["lat_p50_ns"],
            latencyP99Nanoseconds: fields["lat_p99_ns"], latencyMaxNanoseconds: fields["lat_max_ns"],
            kicksPerRequest: requests == 0 ? nil : Double(fields["kicks"] ?? 0) / Double(requests))
    }
}
