import VMM

/// One run of one cell of `hvctl bench`: what the guest (or the host loop) measured, and for
/// hvctl what its own statistics add between the guest's start and end marks.
struct BenchMeasurement: Codable, Sendable {
    var requests: UInt64
    /// Of `requests`, how many were writes.
    var writes: UInt64
    var errors: UInt64
    /// Requests per second over the measured loop.
    var iops: Double
    /// As the guest timed each request (the host loop: elapsed × qd / requests).
    var latencyMeanNanoseconds: UInt64
    /// The guest's per-request latency histogram, summarised (nil for the host loop, which reads
    /// no clock per request).
    var latency: LatencySummary?
    /// That histogram's buckets, for merging runs and drawing the distribution.
    var latencyHistogram: IOBenchHistogram?
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
    /// A TCP stream's rate as it reached the host (`hvctl bench fio`'s tcp-stream).
    var bitsPerSecond: Double?
    /// The redirect workload's phases.
    var redirect: RedirectFigures?
}

/// Where the redirect workload's completion interrupts went, and what its reads cost, in each
/// phase (vCPU 1 halted, then spinning).
struct RedirectFigures: Codable, Sendable, Equatable {
    struct Phase: Codable, Sendable, Equatable {
        /// Completion interrupts taken by vCPU 0 and by vCPU 1.
        var interruptsOnVCPU0: UInt64
        var interruptsOnVCPU1: UInt64
        var latencyMeanNanoseconds: UInt64
        /// Reads whose interrupt had not come 10 ms after they were looked for (with interrupts waited for).
        var lateInterrupts: UInt64
        /// The phase's reads from first to last.
        var nanoseconds: UInt64

        /// The guest's `<name>_...` fields; nil without them.
        init?(_ fields: [String: UInt64], name: String) {
            guard let cpu0 = fields["\(name)_cpu0"], let cpu1 = fields["\(name)_cpu1"] else { return nil }
            interruptsOnVCPU0 = cpu0
            interruptsOnVCPU1 = cpu1
            latencyMeanNanoseconds = fields["\(name)_lat_avg_ns"] ?? 0
            lateInterrupts = fields["\(name)_late"] ?? 0
            nanoseconds = fields["\(name)_ns"] ?? 0
        }
    }

    var halted: Phase
    var spinning: Phase
    /// vCPU 1's wake-ups from halt (KVM's halt_wakeup), per request of both phases.
    var secondVCPUWakeupsPerRequest: Double?
    /// Of the device's interrupts, those sent through a redirected route (hvctl).
    var redirectedInterrupts: UInt64?
    var deviceInterrupts: UInt64?
}

extension BenchMeasurement {
    /// A mean of the guest's figures in whole nanoseconds, clamped: a guest that reports absurd
    /// latencies gets absurd figures, not a trap.
    static func wholeNanoseconds(_ value: Double) -> UInt64 {
        value.isNaN || value <= 0 ? 0 : value >= 0x1p63 ? 1 << 63 : UInt64(value)
    }

    /// Runs made at the same time (one per VM with `--vms`, or per host loop) as one: their
    /// requests, writes, errors and rates add up; per-request figures and the mean latency are
    /// weighted by each part's requests; the histograms merge. A figure only some parts have
    /// (none do for the host loop) is left out.
    static func combined(_ parts: [BenchMeasurement]) -> BenchMeasurement {
        if parts.count == 1 { return parts[0] }
        let requests = parts.reduce(0) { $0 &+ $1.requests }
        let total = Double(max(requests, 1))
        /// The parts' per-request figure, weighted by their requests; nil unless every part has it.
        func perRequest(_ figure: KeyPath<BenchMeasurement, Double?>) -> Double? {
            let values = parts.compactMap { part in part[keyPath: figure].map { $0 * Double(part.requests) } }
            return values.count == parts.count ? values.reduce(0, +) / total : nil
        }
        let latencySum = parts.reduce(0.0) { $0 + Double($1.latencyMeanNanoseconds) * Double($1.requests) }
        var combined = BenchMeasurement(
            requests: requests, writes: parts.reduce(0) { $0 &+ $1.writes },
            errors: parts.reduce(0) { $0 &+ $1.errors }, iops: parts.reduce(0) { $0 + $1.iops },
            latencyMeanNanoseconds: wholeNanoseconds(latencySum / total))
        let histograms = parts.compactMap(\.latencyHistogram)
        if histograms.count == parts.count {
            let merged = IOBenchHistogram.merged(histograms)
            combined.latencyHistogram = merged
            combined.latency = LatencySummary(
                histogram: merged.hdrHistogram, meanNanoseconds: combined.latencyMeanNanoseconds,
                maxNanoseconds: parts.compactMap { $0.latency?.maxNanoseconds }.max())
        }
        combined.exitsPerRequest = perRequest(\.exitsPerRequest)
        combined.kicksPerRequest = perRequest(\.kicksPerRequest)
        combined.interruptsPerRequest = perRequest(\.interruptsPerRequest)
        return combined
    }
}

/// The `key=value` fields of an `iobench: KIND ...` console line.
struct IOBenchLine {
    let fields: [String: UInt64]

    /// Parses the fields after `iobench: kind` (whatever precedes it on the console line); nil when
    /// `line` has no such mark.
    init?(line: String, kind: String) {
        let words = line.split(separator: " ")
        guard
            let start = words.indices.first(where: {
                words[$0].hasSuffix("iobench:") && $0 + 1 < words.count && words[$0 + 1] == kind
            })
        else { return nil }
        var fields: [String: UInt64] = [:]
        for field in words[(start + 2)...] {
            let parts = field.split(separator: "=", maxSplits: 1)
            if parts.count == 2, let value = UInt64(parts[1]) { fields[String(parts[0])] = value }
        }
        self.fields = fields
    }
}

/// What the iobench guest prints at the end of a block run: its result line, and the histogram
/// line before it.
struct IOBenchResult {
    let fields: [String: UInt64]
    let histogram: IOBenchHistogram?

    /// Looks for both in the guest's console lines; nil without a result line.
    init?(lines: [String]) {
        guard let result = lines.lazy.compactMap({ IOBenchLine(line: $0, kind: "result") }).first else { return nil }
        fields = result.fields
        histogram = lines.lazy.compactMap { IOBenchHistogram(line: $0) }.first
    }

    /// The guest's own figures as a measurement.
    var measurement: BenchMeasurement {
        let requests = fields["requests"] ?? 0
        let mean = fields["lat_avg_ns"] ?? 0
        return BenchMeasurement(
            requests: requests, writes: fields["writes"] ?? 0, errors: fields["errors"] ?? 0,
            iops: Double(fields["iops"] ?? 0), latencyMeanNanoseconds: mean,
            latency: histogram.map {
                LatencySummary(histogram: $0.hdrHistogram, meanNanoseconds: mean, maxNanoseconds: fields["lat_max_ns"])
            },
            latencyHistogram: histogram,
            kicksPerRequest: requests == 0 ? nil : Double(fields["kicks"] ?? 0) / Double(requests),
            redirect: RedirectFigures.Phase(fields, name: "halted").flatMap { halted in
                RedirectFigures.Phase(fields, name: "spinning").map { RedirectFigures(halted: halted, spinning: $0) }
            })
    }
}
