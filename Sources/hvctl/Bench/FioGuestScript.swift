import ArgumentParser
import FoundationEssentials

/// A workload `hvctl bench fio` runs in the Linux bench guest: fio's random reads, writes or both
/// (half each) on its virtio-blk disk through Linux's own driver, or an iperf3 TCP stream from the
/// guest to the TAP's host end.
enum FioWorkload: String, CaseIterable, Sendable {
    case randread, randwrite, randrw
    case tcpStream = "tcp-stream"

    /// iperf3's default write size for TCP: a tcp-stream "request" is one write of it.
    static let streamWriteBytes = 131_072

    var isNetwork: Bool { self == .tcpStream }
    /// The name in the table and the record: fio's workloads apart from iobench's.
    var label: String { isNetwork ? rawValue : "fio-\(rawValue)" }
    var writes: Bool { self == .randwrite || self == .randrw }

    /// `--workload`'s list.
    static func parse(_ list: String) throws -> [FioWorkload] {
        try list.split(separator: ",", omittingEmptySubsequences: false).map {
            guard let workload = FioWorkload(rawValue: String($0)) else {
                throw ValidationError("--workload \(list): '\($0)' is not randread, randwrite, randrw or tcp-stream")
            }
            return workload
        }
    }
}

/// One load of one boot: a workload at a request size and queue depth (a stream: iperf3's write
/// size, one stream).
struct FioLoad: Sendable, Equatable {
    let workload: FioWorkload
    let blockSize: Int
    let qd: Int
}

/// The shell script the bench guest runs (its /init runs `guest.run=`, base64): each load in turn,
/// between its "go" and "end" marks, with its output (fio's or iperf3's JSON) printed after the end
/// mark. The counters are sampled at "go" and "end": hvctl's on the vCPU thread as the mark is
/// written, QEMU's through its monitor a moment later; the guest idles a second after "end", so
/// that moment is before the output's console writes. A "start" mark a second before "go" lets the
/// previous load's output settle.
enum FioGuestScript {
    /// The guest's and the TAP's host end's addresses (BenchTAP's).
    static let guestAddress = "169.254.77.2"
    static let hostAddress = "169.254.77.1"

    /// A stream that cannot connect, or runs this long past its time (busybox's timeout then sends
    /// iperf3 SIGTERM and it exits 1, "interrupt" in its JSON), fails in the guest with iperf3's
    /// error and the guest's view of its network, before the watchdog would stop the boot.
    static let connectTimeoutMilliseconds = 10_000
    static let streamSlackSeconds = 60

    /// Linux's x86 command line holds 2047 bytes.
    static let commandLineLimit = 2047

    static func script(loads: [FioLoad], seconds: Int, iperfPort: Int) -> String {
        let network = loads.contains { $0.workload.isNetwork }
        // Sizes as fio writes them (4k: its kb_base is 1024), to fit more loads on the line.
        let list = loads.map { "\"\($0.workload.rawValue) \(BenchBlockSize.label($0.blockSize)) \($0.qd)\"" }
            .joined(separator: " ")
        let fio = """
            fio --name=bench --filename=/dev/vda --rw=$1 --rwmixread=50 --bs=$2 --iodepth=$3 --direct=1 \
            --ioengine=libaio --runtime=\(seconds) --time_based --lat_percentiles=1 --percentile_list=50:90:99:99.9 \
            --unified_rw_reporting=both --output-format=json --output=/tmp/out > /tmp/err 2>&1
            """
        // The stream's parts only where there is one: a block-only run keeps the line for its loads.
        let load =
            network
            ? """
            if [ $1 = tcp-stream ]; then
            t0=$(date +%s); timeout -k 10 \(seconds + streamSlackSeconds) iperf3 -c \(hostAddress) -p \(iperfPort) \
            -t \(seconds) -i 0 -J --connect-timeout \(connectTimeoutMilliseconds) > /tmp/out 2> /tmp/err
            else
            \(fio)
            fi
            """ : fio
        let diagnosis =
            network
            ? """
            [ $status = 0 -o $1 != tcp-stream ] || echo guest net: after $(($(date +%s) - t0)) s, \
            rx $(cat /sys/class/net/eth0/statistics/rx_packets 2>&1) tx $(cat /sys/class/net/eth0/statistics/tx_packets 2>&1) \
            packets, neighbour $(ip neigh show \(hostAddress) 2>&1), $(awk '/^Tcp:/ { if (n++) print "tcp opens " $6 \
            ", failed " $8 ", segments in " $11 ", out " $12 ", retransmitted " $13 }' /proc/net/snmp 2>&1)
            """ : ""
        return """
            \(network ? "ip link set eth0 up && ip addr add \(guestAddress)/24 dev eth0" : "true")
            i=0
            for load in \(list); do
              set -- $load; i=$((i + 1))
              echo "bench-fio: start $i"; sleep 1; echo "bench-fio: go $i"
            \(load)
              status=$?
              echo "bench-fio: end $i $status"; sleep 1
              echo "bench-fio: output $i"; cat /tmp/out; [ $status = 0 ] || cat /tmp/err
            \(diagnosis)
              echo
              echo "bench-fio: output-end $i"
            done
            """
    }

    /// The guest's kernel command line: the console, no reboot on panic, the script.
    static func commandLine(loads: [FioLoad], seconds: Int, iperfPort: Int) throws -> String {
        let encoded = Data(script(loads: loads, seconds: seconds, iperfPort: iperfPort).utf8).base64EncodedString()
        let line = "console=ttyS0 panic=-1 quiet guest.run=\(encoded)"
        guard line.utf8.count <= commandLineLimit else {
            throw ValidationError(
                "--workload, --bs, --qd: \(loads.count) loads do not fit one guest command line (\(line.utf8.count) "
                    + "of \(commandLineLimit) bytes); measure fewer at once")
        }
        return line
    }
}

/// The guest's console, line by line: each load's marks and its output.
struct FioConsole {
    enum Event: Equatable {
        case start(load: Int)
        /// The I/O starts now.
        case go(load: Int)
        case end(load: Int, status: Int)
        case output(load: Int, text: String)
    }

    /// The most output kept for one load (fio's JSON is ~8 KiB).
    static let outputLimit = 1 << 20

    private var collecting: Int?
    private var collected: [String] = []
    private var collectedBytes = 0

    /// What `line` means, if anything; output lines are gathered until their end line.
    mutating func take(_ line: String) -> Event? {
        if let load = collecting {
            if line.hasSuffix("bench-fio: output-end \(load)") {
                collecting = nil
                defer { collected = [] }
                return .output(load: load, text: collected.joined(separator: "\n"))
            }
            if collectedBytes + line.utf8.count <= Self.outputLimit {
                collected.append(line)
                collectedBytes += line.utf8.count + 1
            }
            return nil
        }
        // A kernel message may precede the mark on its line.
        let words = line.split(separator: " ")
        guard let markIndex = words.firstIndex(of: "bench-fio:"), markIndex + 2 < words.count,
            let load = Int(words[markIndex + 2])
        else { return nil }
        switch words[markIndex + 1] {
        case "start": return .start(load: load)
        case "go": return .go(load: load)
        case "end" where markIndex + 3 < words.count: return .end(load: load, status: Int(words[markIndex + 3]) ?? -1)
        case "output":
            collecting = load
            collectedBytes = 0
            return nil
        default: return nil
        }
    }
}
