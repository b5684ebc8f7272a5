import Glibc
import VMM

/// Everything `hvctl bench --json` writes: the environment, the options, and each cell's runs
/// with their median and spread.
struct BenchReport: Codable {
    struct Environment: Codable {
        let hvctlVersion: String
        /// The git commit hvctl was built from (with "+changes" when the tree had uncommitted
        /// ones), when it runs from a checkout's .build; nil otherwise.
        let hvctlCommit: String?
        let hostKernel: String
        let cpuModel: String
        let cpus: Int
        /// Whether this host's KVM runs guest ring 0 natively (`hvctl check`).
        let kvmExecution: String
        let qemuVersion: String?

        static func current(qemu: Bool) -> Environment {
            var name = utsname()
            uname(&name)
            let release = withUnsafeBytes(of: &name.release) {
                String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
            }
            let model = cpuModel() ?? "unknown"
            let execution =
                HostReport.exists("/sys/module/kvm_pvm")
                ? "emulated (PVM)"
                : HostReport.exists("/sys/module/kvm_amd") ? "native (AMD SVM)" : "native (Intel VT-x)"
            return Environment(
                hvctlVersion: HVCtl.version, hvctlCommit: commit(), hostKernel: release, cpuModel: model,
                cpus: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), kvmExecution: execution,
                qemuVersion: qemu ? BenchQEMURun.version() : nil)
        }

        /// `git describe` of the checkout whose .build holds this hvctl.
        private static func commit() -> String? {
            guard let executable = Bench.executablePath(), access("/usr/bin/git", X_OK) == 0 else { return nil }
            let parts = executable.split(separator: "/", omittingEmptySubsequences: false)
            guard let build = parts.firstIndex(of: ".build") else { return nil }
            let checkout = parts[..<build].joined(separator: "/")
            guard
                let output = try? BenchProcess.run(
                    "/usr/bin/git", ["-C", checkout, "describe", "--always", "--dirty=+changes", "--abbrev=12"]),
                let line = output.split(whereSeparator: \.isNewline).first
            else { return nil }
            return String(line)
        }

        private static func cpuModel() -> String? {
            guard let file = fopen("/proc/cpuinfo", "r") else { return nil }
            defer { fclose(file) }
            var buffer = [CChar](repeating: 0, count: 512)
            while fgets(&buffer, Int32(buffer.count), file) != nil {
                let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                if line.hasPrefix("model name"), let colon = line.firstIndex(of: ":") {
                    return String(line[line.index(after: colon)...]).trimmed(of: " \n\t")
                }
            }
            return nil
        }
    }

    struct Options: Codable {
        let workloads: [String]
        /// Request sizes in bytes.
        let blockSizes: [Int]
        let qd: [Int]
        let modes: [String]
        let peers: [String]
        /// QEMU's iothread polling limits measured besides its default (`qemu-pmn=N` targets).
        let qemuPollMaxNanoseconds: [UInt64]
        /// Requests per run (with a duration, the cap).
        let requests: UInt64
        /// How long each run issued requests, when runs were timed.
        let durationMilliseconds: UInt64?
        /// Whether the guest asked for a completion interrupt per request (`--irq`).
        var interrupts: Bool? = nil
        /// hvctl's side-core coalescing settings measured (`--irq-coalesce`).
        var interruptCoalescing: [String]? = nil
        /// Open loop: requests per second (`--rate`).
        var rate: UInt64? = nil
        let `repeat`: Int
        let disk: String
        /// Where each peer's threads ran (BenchQEMURun.placement).
        let pinning: String
        /// VMs measured at once (`--vms`; absent in records before it: 1).
        var vms: Int? = nil
        /// hvctl's side cores (`--side-cores`; absent in records before it: 1).
        var sideCores: Int? = nil
        /// hvctl's interrupt redirection settings measured (`--irq-redirect`; absent in records
        /// before it: none, as bench then ran hvctl with redirection off).
        var interruptRedirection: [String]? = nil
    }

    struct Spread: Codable {
        let min: Double
        let median: Double
        let max: Double

        init(_ values: [Double]) {
            let sorted = values.sorted()
            min = sorted.first ?? 0
            max = sorted.last ?? 0
            median = sorted.isEmpty ? 0 : sorted[sorted.count / 2]
        }
    }

    struct Cell: Codable {
        let target: String
        let workload: String
        /// Bytes per request.
        let blockSize: Int
        let qd: Int
        var runs: [BenchMeasurement]
        var iops: Spread { Spread(runs.map(\.iops)) }
        var latencyMeanNanoseconds: Spread { Spread(runs.map { Double($0.latencyMeanNanoseconds) }) }

        /// Every run's guest-timed requests in one distribution (nil for the host loop); for runs
        /// whose percentiles another tool worked out (fio's), which do not merge, the median run's.
        var latency: LatencySummary? {
            let histograms = runs.compactMap(\.latencyHistogram)
            guard !histograms.isEmpty, histograms.count == runs.count else {
                return histograms.isEmpty && !runs.isEmpty
                    ? runs.sorted { $0.iops < $1.iops }[runs.count / 2].latency : nil
            }
            let requests = runs.reduce(0) { $0 + $1.requests }
            let latencySum = runs.reduce(0.0) { $0 + Double($1.latencyMeanNanoseconds) * Double($1.requests) }
            return LatencySummary(
                histogram: IOBenchHistogram.merged(histograms).hdrHistogram,
                meanNanoseconds: requests == 0 ? 0 : BenchMeasurement.wholeNanoseconds(latencySum / Double(requests)),
                maxNanoseconds: runs.compactMap { $0.latency?.maxNanoseconds }.max())
        }

        /// The workload, size and depth, as the table and the plot name them.
        var configuration: String { "\(workload) \(BenchBlockSize.label(blockSize)) qd=\(qd)" }

        /// QEMU at any polling limit.
        var isQEMU: Bool { target == "qemu" || target.hasPrefix("qemu-") }

        /// Whether `other` ran the same load (a peer to compare with).
        func sameLoad(as other: Cell) -> Bool {
            workload == other.workload && blockSize == other.blockSize && qd == other.qd
        }

        private enum CodingKeys: String, CodingKey {
            case target, workload, blockSize, qd, runs, iops, latencyMeanNanoseconds, latency
        }

        init(target: String, workload: String, blockSize: Int, qd: Int, runs: [BenchMeasurement]) {
            self.target = target
            self.workload = workload
            self.blockSize = blockSize
            self.qd = qd
            self.runs = runs
        }

        /// From a record: what was measured; the spread and latency are derived again.
        init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.init(
                target: try container.decode(String.self, forKey: .target),
                workload: try container.decode(String.self, forKey: .workload),
                blockSize: try container.decode(Int.self, forKey: .blockSize),
                qd: try container.decode(Int.self, forKey: .qd),
                runs: try container.decode([BenchMeasurement].self, forKey: .runs))
        }

        func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(target, forKey: .target)
            try container.encode(workload, forKey: .workload)
            try container.encode(blockSize, forKey: .blockSize)
            try container.encode(qd, forKey: .qd)
            try container.encode(runs, forKey: .runs)
            try container.encode(iops, forKey: .iops)
            try container.encode(latencyMeanNanoseconds, forKey: .latencyMeanNanoseconds)
            try container.encodeIfPresent(latency, forKey: .latency)
        }
    }

    let environment: Environment
    let options: Options
    var cells: [Cell]
}

extension String {
    fileprivate func trimmed(of characters: String) -> String {
        let set = Set(characters)
        guard let first = firstIndex(where: { !set.contains($0) }) else { return "" }
        let last = lastIndex(where: { !set.contains($0) })!
        return String(self[first...last])
    }
}
