import Foundation
import VirtioDevices
import XCTest

/// virtio-net with Linux's own virtio_net driver against a TAP inside the rig's L2 (which has no
/// network device: nothing leaves the emulated machine). Link-local addresses only.
final class NestedNetTests: XCTestCase {
    static let hostAddress = "169.254.77.1"
    static let guestAddress = "169.254.77.2"
    static let hostMAC = "02:00:00:00:00:01"
    static let guestMAC = "52:54:00:12:34:58"
    /// L2's extra source addresses for the RSS flows (pings to the guest): chosen so that both of
    /// two queues get flows, whichever way the hash falls. (Pings, because busybox nc ignores -p
    /// when it connects, so TCP source ports cannot be chosen here; the port path is covered by
    /// TAPFlowSteeringTests on the host.)
    static let rssSources: [String] = {
        var sources: [String] = []
        var perQueue = [0, 0]
        var last = 10
        while perQueue.min()! < 3 {
            let source = "169.254.77.\(last)"
            let queue = expectedQueue(source: source)
            if perQueue[queue] < 3 { sources.append(source); perQueue[queue] += 1 }
            last += 1
        }
        return sources
    }()

    /// The receive queue (of 2) the Toeplitz hash gives an ICMP flow from `source` to the guest.
    static func expectedQueue(source: String) -> Int {
        func address(_ text: String) -> [UInt8] { text.split(separator: ".").map { UInt8($0)! } }
        let input = ToeplitzHash.flowInput(source: address(source), destination: address(guestAddress), ports: nil)
        return ToeplitzHash.queue(of: ToeplitzHash().hash(input), queues: 2)
    }

    static let rigRun: Result<(sections: [String: NestedRig.Section], output: String), Error> = Result {
        try Toolchain.requireArtifacts()
        let guestSetUp = "ip link set lo up; ip addr add \(guestAddress)/24 dev eth0 && ip link set eth0 up; sleep 1"
        let transfers = """
            \(guestSetUp)
            ping -c 3 \(hostAddress) >/dev/null && echo guest-ping-ok
            wget -q -O /tmp/down http://\(hostAddress):8080/down && echo "guest-down $(md5sum < /tmp/down | cut -d' ' \
            -f1)"
            mkdir -p /srv; dd if=/dev/urandom of=/srv/up bs=1M count=4 2>/dev/null
            echo "guest-up $(md5sum < /srv/up | cut -d' ' -f1)"
            httpd -p \(guestAddress):8081 -h /srv
            # Stay up until L2 has fetched /srv/up (it then publishes /fetched).
            i=0; while [ ! -f /tmp/fetched ] && [ $i -lt 60 ]; do sleep 1; wget -q -O /tmp/fetched \
            http://\(hostAddress):8080/fetched || rm -f /tmp/fetched; i=$((i+1)); done
            """
        let multiQueue = """
            \(guestSetUp)
            echo "mq-queues $(ls /sys/class/net/eth0/queues | tr '\\n' ' ')"
            for cpu in 0 1; do taskset -c $cpu wget -q -O /dev/null http://\(hostAddress):8080/down & done; wait
            echo mq-done
            """
        // Virtual RSS: nothing but the measured flows reaches the guest (no IPv6 on L2's side,
        // static neighbours both ways, set with arp: busybox's ip has no neigh add), and L2 reads
        // the receive queues' counters around each flow.
        let rssGuest = """
            echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6
            \(guestSetUp)
            for a in \(hostAddress) \(NestedNetTests.rssSources.joined(separator: " ")); do arp -i eth0 -s $a \
            \(NestedNetTests.hostMAC); done
            mkdir -p /srv; echo hello > /srv/f
            httpd -p \(guestAddress):8081 -h /srv
            nc -l -p 9999 >/dev/null; echo rss-guest-done
            """
        let rssFlows = NestedNetTests.rssSources.map { source in
            """
            echo "rss-flow \(source) $(hvctl stats --socket /tmp/rss.sock)"
            ping -c 5 -i 0.2 -I \(source) \(guestAddress) >/dev/null
            """
        }.joined(separator: "\n")
        let rssAfterStart = """
            arp -i tap0 -s \(guestAddress) \(NestedNetTests.guestMAC)
            for a in \(NestedNetTests.rssSources.joined(separator: " ")); do ip addr add $a/32 dev tap0; done
            i=0; until wget -q -O /dev/null http://\(guestAddress):8081/f 2>/dev/null || [ $i -ge 60 ]; do sleep 1; \
            i=$((i+1)); done
            \(rssFlows)
            echo "rss-flow end $(hvctl stats --socket /tmp/rss.sock)"
            echo bye | nc -w 5 \(guestAddress) 9999
            """
        func boot(_ name: String, cpus: Int, net: String, script: String, afterStart: String, options: String = "")
            -> String
        {
            """
            echo "=== begin \(name)"
            hvctl run --kernel /guest/bzImage --initrd /guest/initramfs.cpio --cpus \(cpus) --net \(net) \(options) \
            --cmdline '\(NestedRig.guestCommandLine(running: script))' --stats-json /tmp/\(name).json &
            pid=$!
            i=0; while [ ! -d /sys/class/net/tap0 ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done
            echo 1 > /proc/sys/net/ipv6/conf/tap0/disable_ipv6
            ip link set tap0 address \(NestedNetTests.hostMAC)
            ip addr add \(hostAddress)/24 dev tap0 2>/dev/null; ip link set tap0 up
            \(afterStart)
            wait $pid; st=$?
            cat /tmp/\(name).json; echo
            echo "=== end \(name) status=$st"
            """
        }
        let script = """
            mkdir -p /srv; dd if=/dev/urandom of=/srv/down bs=1M count=4 2>/dev/null; rm -f /srv/fetched
            echo "=== begin host"; echo "host-down $(md5sum < /srv/down | cut -d' ' -f1)"; echo "=== end host status=0"
            httpd -p 8080 -h /srv
            \(boot("transfers", cpus: 1, net: "tap=tap0,mac=52:54:00:12:34:56", script: transfers, afterStart: """
                i=0; until wget -q -O /tmp/up http://\(guestAddress):8081/up 2>/dev/null || [ $i -ge 60 ]; do sleep 1; \
                i=$((i+1)); done
                echo "host-up $(md5sum < /tmp/up | cut -d' ' -f1)"
                echo done > /srv/fetched  # tells the guest it may power off
                """))
            \(boot("multiqueue", cpus: 2, net: "tap=tap0,queues=2", script: multiQueue, afterStart: ""))
            \(boot("rss", cpus: 2, net: "tap=tap0,queues=2,mac=\(NestedNetTests.guestMAC)", script: rssGuest,
                   afterStart: rssAfterStart, options: "--api-socket /tmp/rss.sock"))
            """
        return try NestedRig.run(script: script)
    }

    func section(_ name: String) throws -> NestedRig.Section {
        let run = try Self.rigRun.get()
        return try XCTUnwrap(run.sections[name], "no output for \(name); the rig printed:\n\(run.output.suffix(3000))")
    }

    func queues(in section: NestedRig.Section) throws -> [String: [String: Any]] {
        let document = try XCTUnwrap(try section.jsonDocument(), section.output)
        let device = try XCTUnwrap((document["devices"] as? [[String: Any]])?.first)
        XCTAssertEqual(device["type"] as? String, "virtio-net")
        let list = try XCTUnwrap(device["queues"] as? [[String: Any]])
        return Dictionary(uniqueKeysWithValues: list.map { ($0["name"] as? String ?? "", $0) })
    }

    func testPingAndTCPTransfersBothWays() throws {
        let result = try section("transfers")
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("guest-ping-ok"), result.output)
        let host = try section("host")
        XCTAssertEqual(result.value("guest-down"), host.value("host-down"), "4 MiB L2 -> guest intact")
        XCTAssertNotNil(result.value("guest-up"))
        XCTAssertEqual(result.value("host-up"), result.value("guest-up"), "4 MiB guest -> L2 intact")
        let stats = try queues(in: result)
        XCTAssertGreaterThanOrEqual(stats["rx0"]?["bytes"] as? Int ?? 0, 4 << 20)
        XCTAssertGreaterThanOrEqual(stats["tx0"]?["bytes"] as? Int ?? 0, 4 << 20)
        XCTAssertEqual(stats["rx0"]?["errors"] as? Int, 0)
        XCTAssertEqual(stats["tx0"]?["errors"] as? Int, 0)
    }

    func testTwoQueuePairsWithTwoVCPUs() throws {
        let result = try section("multiqueue")
        XCTAssertEqual(result.status, 0, result.output)
        let listed = try XCTUnwrap(result.value("mq-queues"))
        XCTAssertTrue(listed.contains("rx-1") && listed.contains("tx-1"), listed)
        XCTAssertTrue(result.output.contains("mq-done"))
        let stats = try queues(in: result)
        XCTAssertGreaterThan(stats["control"]?["requests"] as? Int ?? 0, 0, "VIRTIO_NET_CTRL_MQ set the pair count")
        XCTAssertEqual(stats["control"]?["errors"] as? Int, 0)
        for queue in ["tx0", "tx1"] {
            XCTAssertGreaterThan(stats[queue]?["requests"] as? Int ?? 0, 0, "\(queue) carried traffic")
        }
    }

    /// Frames each receive queue took, from one `hvctl stats` document.
    func receivedFrames(_ json: String) throws -> [Int] {
        let document = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any], json)
        let queues = try XCTUnwrap(
            (document["devices"] as? [[String: Any]])?.first?["queues"] as? [[String: Any]], json)
        let byName = Dictionary(
            uniqueKeysWithValues: queues.map { ($0["name"] as? String ?? "", $0["requests"] as? Int ?? 0) })
        return ["rx0", "rx1"].map { byName[$0] ?? 0 }
    }

    func testEachFlowLandsOnTheQueueItsToeplitzHashPicks() throws {
        let result = try section("rss")
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("rss-guest-done"), result.output)
        XCTAssertFalse(result.output.contains("arp: "), "the static neighbours were set: \(result.output)")
        // Counters before each flow, and at the end.
        let snapshots = try result.output.components(separatedBy: "\n").filter { $0.hasPrefix("rss-flow ") }.map {
            line -> [Int] in
            let json = line.split(separator: " ", maxSplits: 2).dropFirst(2).first.map(String.init) ?? ""
            return try receivedFrames(json)
        }
        XCTAssertEqual(snapshots.count, Self.rssSources.count + 1, result.output)
        guard snapshots.count == Self.rssSources.count + 1 else { return }
        for (index, source) in Self.rssSources.enumerated() {
            let queue = Self.expectedQueue(source: source)
            let delta = zip(snapshots[index + 1], snapshots[index]).map { $0 - $1 }
            print("rss rig: pings from \(source): frames per receive queue \(delta), hash picks rx\(queue)")
            // Five echo requests, all on the hashed queue, and nothing else: with the neighbours
            // static, no ARP request lands on rx0 (every CI run before they were had one there).
            XCTAssertEqual(
                delta[queue], 5, "pings from \(source) on rx\(queue): \(delta); every snapshot: \(snapshots)")
            XCTAssertEqual(delta[1 - queue], 0, "pings from \(source) stay off rx\(1 - queue): \(delta)")
        }
    }
}
