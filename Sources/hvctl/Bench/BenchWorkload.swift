import ArgumentParser

/// A workload `hvctl bench` runs: block random reads, random writes of the pattern (so a later
/// read still verifies) or half of each (fio's names), or over a virtio-net NIC on a TAP: ICMP
/// echo round trips to the host's end, one at a time (like netperf's TCP_RR), or a stream of
/// 1514-byte UDP frames to it, 32 in flight (like UDP_STREAM; the host stack drops them); or
/// interrupt redirection (iobench's redirect.c): two vCPUs, 4 KiB reads at QD1 on vCPU 0 whose
/// completion interrupts either vCPU may take (lowest-priority MSI), while vCPU 1 first halts
/// ("halted" phase), then spins ("spinning").
enum BenchWorkload: String, CaseIterable, Sendable {
    case randread, randwrite, randrw
    case netRoundTrip = "net-rr"
    case netStream = "net-stream"
    case redirect

    /// The share of requests that are writes, as iobench's `write_pct` takes it.
    var writePercent: Int {
        switch self {
        case .randread, .netRoundTrip, .netStream, .redirect: 0
        case .randwrite: 100
        case .randrw: 50
        }
    }

    var isNetwork: Bool { self == .netRoundTrip || self == .netStream }

    /// The guest's vCPUs.
    var vcpus: Int { self == .redirect ? 2 : 1 }

    /// The size and depth of a workload that has its own, which `--bs` and `--qd` do not change:
    /// the network's frames (a 98-byte echo request, one at a time; 1514-byte frames, 32 in
    /// flight) and redirect's 4 KiB reads, one at a time.
    var fixedShape: (bytes: Int, qd: Int)? {
        switch self {
        case .netRoundTrip: (14 + 20 + 8 + 56, 1)
        case .netStream: (1514, 32)
        case .redirect: (4096, 1)
        default: nil
        }
    }

    /// `--workload`'s list.
    static func parse(_ list: String) throws -> [BenchWorkload] {
        try list.split(separator: ",", omittingEmptySubsequences: false).map {
            guard let workload = BenchWorkload(rawValue: String($0)) else {
                throw ValidationError(
                    "--workload \(list): '\($0)' is not randread, randwrite, randrw, net-rr, net-stream or redirect")
            }
            return workload
        }
    }
}

/// `--bs`'s list: request sizes in bytes, each a multiple of 4 KiB from 4 KiB to 128 KiB (what
/// iobench's buffers hold), written as bytes or with a k suffix.
enum BenchBlockSize {
    static let range = 4096...131_072

    static func parse(_ list: String) throws -> [Int] {
        try list.split(separator: ",", omittingEmptySubsequences: false).map { word in
            let lower = word.lowercased()
            let bytes = lower.hasSuffix("k") ? Int(lower.dropLast()).map { $0 * 1024 } : Int(lower)
            guard let bytes, range.contains(bytes), bytes % 4096 == 0 else {
                throw ValidationError("--bs \(list): '\(word)' is not a multiple of 4k from 4k to 128k")
            }
            return bytes
        }
    }

    /// 4096 → "4k".
    static func label(_ bytes: Int) -> String { bytes % 1024 == 0 ? "\(bytes / 1024)k" : "\(bytes)" }
}

/// The lists both bench commands take besides `--bs`.
enum BenchList {
    /// `--qd`'s list: queue depths from 1 to `limit`.
    static func queueDepths(_ list: String, limit: Int) throws -> [Int] {
        try list.split(separator: ",", omittingEmptySubsequences: false).map {
            guard let depth = Int($0), (1...limit).contains(depth) else {
                throw ValidationError("--qd \(list): '\($0)' is not a queue depth from 1 to \(limit)")
            }
            return depth
        }
    }

    /// `--irq-coalesce`'s list: true for on, false for off, in the order given.
    static func coalescing(_ list: String) throws -> [Bool] {
        try list.split(separator: ",", omittingEmptySubsequences: false).map {
            guard $0 == "on" || $0 == "off" else {
                throw ValidationError("--irq-coalesce \(list): '\($0)' is not on or off")
            }
            return $0 == "on"
        }
    }
}

/// What one measurement runs, whoever runs it: the workload, request size, queue depth, and how
/// many requests or for how long.
struct BenchLoad: Sendable {
    let workload: BenchWorkload
    let blockSize: Int
    let qd: Int
    /// Requests per run; with a duration, the most a run may make.
    let requests: UInt64
    var durationMilliseconds: UInt64? = nil
    /// The guest asks for a completion interrupt per request.
    var interrupts = false
    /// Open loop (block workloads): a new request every 1/rate s while fewer than qd are out.
    var rate: UInt64? = nil

    /// The iobench guest's command line for it (hold_ms: how long it waits at each mark).
    func guestCommandLine(holdMilliseconds: Int, verify: Bool) -> String {
        if workload == .redirect {
            // Vector 0x41, which KVM's lowest-priority hashing gives to vCPU 1; with interrupts, vCPU 0
            // waits for each completion's interrupt before it looks at the ring.
            return "redirect=1 requests=\(requests) vector=0x41 hold_ms=\(holdMilliseconds)"
                + (interrupts ? " irqwait=1" : "")
        }
        let common =
            "requests=\(requests) hold_ms=\(holdMilliseconds)"
            + (durationMilliseconds.map { " duration_ms=\($0)" } ?? "") + (interrupts ? " irq=1" : "")
        guard !workload.isNetwork else {
            return "net=1 \(workload == .netStream ? "stream=1 " : "")\(common) peer_mac=0x\(BenchTAP.hostMACHex)"
        }
        return "qd=\(qd) bs=\(blockSize) write_pct=\(workload.writePercent) \(common)"
            + (rate.map { " rate=\($0)" } ?? "") + (verify ? "" : " verify=0")
    }
}
