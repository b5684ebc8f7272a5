import Foundation
import Glibc
import TestSupport
@testable import VirtioDevices
import XCTest

/// Virtual RSS: the Toeplitz hash against the RSS specification's verification values, and the
/// generated eBPF program run by this host's kernel (BPF_PROG_TEST_RUN) on frames built here.
final class FlowSteeringTests: XCTestCase {
    /// (source, destination, source port, destination port, hash of the addresses, hash with ports)
    static let ipv4Vectors: [([UInt8], [UInt8], UInt16, UInt16, UInt32, UInt32)] = [
        ([66, 9, 149, 187], [161, 142, 100, 80], 2794, 1766, 0x323e_8fc2, 0x51cc_c178),
        ([199, 92, 111, 2], [65, 69, 140, 83], 14230, 4739, 0xd718_262a, 0xc626_b0ea),
        ([24, 19, 198, 95], [12, 22, 207, 184], 12898, 38024, 0xd2d0_a5de, 0x5c2b_394a),
        ([38, 27, 205, 30], [209, 142, 163, 6], 48228, 2217, 0x8298_9176, 0xafc7_327f),
        ([153, 39, 163, 191], [202, 188, 127, 2], 44251, 1303, 0x5d18_09c5, 0x10e8_28a2),
    ]
    static let ipv6Source: [UInt8] =
        [0x3f, 0xfe, 0x25, 0x01, 0x02, 0x00, 0x1f, 0xff] + Array(repeating: 0, count: 7) + [7]
    static let ipv6Destination: [UInt8] =
        [0x3f, 0xfe, 0x25, 0x01, 0x02, 0x00, 0x00, 0x03] + Array(repeating: 0, count: 7) + [1]

    func testToeplitzMatchesTheSpecificationsVerificationSuite() {
        let toeplitz = ToeplitzHash()
        for (source, destination, sourcePort, destinationPort, addressesOnly, withPorts) in Self.ipv4Vectors {
            XCTAssertEqual(
                toeplitz.hash(ToeplitzHash.flowInput(source: source, destination: destination, ports: nil)),
                addressesOnly)
            XCTAssertEqual(
                toeplitz.hash(
                    ToeplitzHash.flowInput(
                        source: source, destination: destination, ports: (sourcePort, destinationPort))), withPorts)
        }
        XCTAssertEqual(
            toeplitz.hash(
                ToeplitzHash.flowInput(source: Self.ipv6Source, destination: Self.ipv6Destination, ports: nil)),
            0x2cc1_8cd5)
        XCTAssertEqual(
            toeplitz.hash(
                ToeplitzHash.flowInput(
                    source: Self.ipv6Source, destination: Self.ipv6Destination, ports: (2794, 1766))),
            0x4020_7d3d)
    }

    // MARK: Frames

    static let ethernet: [UInt8] = [0x52, 0x54, 0, 0, 0, 1, 0x52, 0x54, 0, 0, 0, 2]

    static func ipv4Frame(
        _ source: [UInt8], _ destination: [UInt8], protocol number: UInt8, ports: (UInt16, UInt16),
        fragmentBytes: [UInt8] = [0x40, 0], headerWords: UInt8 = 5
    ) -> [UInt8] {
        let options = [UInt8](repeating: 1, count: Int(headerWords - 5) * 4)
        return ethernet + [0x08, 0x00] + [0x40 | headerWords, 0, 0, 40, 0, 1] + fragmentBytes + [64, number, 0, 0]
            + source + destination + options + transport(ports)
    }

    static func ipv6Frame(_ source: [UInt8], _ destination: [UInt8], nextHeader: UInt8, ports: (UInt16, UInt16))
        -> [UInt8]
    {
        ethernet + [0x86, 0xdd] + [0x60, 0, 0, 0, 0, 20, nextHeader, 64] + source + destination + transport(ports)
    }

    /// Ports and 16 more bytes of a TCP/UDP header.
    static func transport(_ ports: (UInt16, UInt16)) -> [UInt8] {
        [UInt8(ports.0 >> 8), UInt8(ports.0 & 0xff), UInt8(ports.1 >> 8), UInt8(ports.1 & 0xff)]
            + Array(repeating: 0, count: 16)
    }

    func testTheKernelRunsTheProgramToTheSameQueuesAsTheHash() throws {
        let toeplitz = ToeplitzHash()
        for queues in [2, 3, 4] {
            let program = try FlowSteeringProgram(queues: queues)
            func expected(_ input: [UInt8]) -> Int { ToeplitzHash.queue(of: toeplitz.hash(input), queues: queues) }
            for (source, destination, sourcePort, destinationPort, _, _) in Self.ipv4Vectors {
                let ports = (sourcePort, destinationPort)
                let withPorts = expected(ToeplitzHash.flowInput(source: source, destination: destination, ports: ports))
                let addressesOnly = expected(
                    ToeplitzHash.flowInput(source: source, destination: destination, ports: nil))
                XCTAssertEqual(
                    try program.queue(forFrame: Self.ipv4Frame(source, destination, protocol: 6, ports: ports)),
                    withPorts, "TCP, \(queues) queues")
                XCTAssertEqual(
                    try program.queue(forFrame: Self.ipv4Frame(source, destination, protocol: 17, ports: ports)),
                    withPorts, "UDP")
                XCTAssertEqual(
                    try program.queue(
                        forFrame: Self.ipv4Frame(source, destination, protocol: 6, ports: ports, headerWords: 7)),
                    withPorts,
                    "IP options move the ports")
                XCTAssertEqual(
                    try program.queue(forFrame: Self.ipv4Frame(source, destination, protocol: 1, ports: ports)),
                    addressesOnly, "ICMP: addresses")
                XCTAssertEqual(
                    try program.queue(
                        forFrame: Self.ipv4Frame(
                            source, destination, protocol: 6, ports: ports, fragmentBytes: [0x20, 0])),
                    addressesOnly, "a first fragment (MF) hashes its addresses only, like the rest of the datagram")
            }
            for sourcePort in [UInt16(2794), 1, 65535] {
                let input = ToeplitzHash.flowInput(
                    source: Self.ipv6Source, destination: Self.ipv6Destination, ports: (sourcePort, 1766))
                XCTAssertEqual(
                    try program.queue(
                        forFrame: Self.ipv6Frame(
                            Self.ipv6Source, Self.ipv6Destination, nextHeader: 6, ports: (sourcePort, 1766))),
                    expected(input), "IPv6 TCP")
            }
            XCTAssertEqual(
                try program.queue(
                    forFrame: Self.ipv6Frame(Self.ipv6Source, Self.ipv6Destination, nextHeader: 58, ports: (1, 2))),
                expected(Self.ipv6Source + Self.ipv6Destination), "ICMPv6: addresses")
            let arp = Self.ethernet + [0x08, 0x06] + Array(repeating: 0, count: 28)
            XCTAssertEqual(try program.queue(forFrame: arp), 0, "not IP: queue 0")
            let cutInPorts = Array(
                Self.ipv4Frame([10, 0, 0, 1], [10, 0, 0, 2], protocol: 6, ports: (1, 2)).prefix(14 + 20 + 2))
            XCTAssertEqual(
                try program.queue(forFrame: cutInPorts), expected([10, 0, 0, 1, 10, 0, 0, 2]),
                "ports cut off: addresses")
            // (A frame cut inside its IP header cannot be tried: BPF_PROG_TEST_RUN refuses it.)
        }
    }

    func testFlowsSpreadOverTheQueues() throws {
        // 64 TCP flows from different source ports reach every one of 4 queues.
        let program = try FlowSteeringProgram(queues: 4)
        var seen = Set<Int>()
        for port in UInt16(40000)..<40064 {
            seen.insert(
                try program.queue(
                    forFrame: Self.ipv4Frame([169, 254, 77, 1], [169, 254, 77, 2], protocol: 6, ports: (port, 8081))))
        }
        XCTAssertEqual(seen, [0, 1, 2, 3])
    }
}

/// The program attached to a real TAP on this host: frames the host sends down the TAP arrive on
/// the TAP queue (the queue pair) the hash picks. Needs CAP_NET_ADMIN and CAP_BPF, as hvctl does.
final class TAPFlowSteeringTests: XCTestCase {
    func shell(_ command: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, command)
    }

    func testFramesSentDownTheTAPArriveOnTheHashedQueue() throws {
        var configuration = NetDeviceConfiguration(tapName: "sctest-rss", mac: [0x52, 0x54, 0, 0, 0, 9])
        configuration.queuePairs = 2
        let device = try NetDevice(configuration: configuration, name: "net0")
        try shell(
            """
            ip link set sctest-rss address 02:00:00:00:00:01 && ip addr add 169.254.91.1/24 dev sctest-rss && ip link \
            set sctest-rss up && ip neigh replace 169.254.91.2 lladdr 52:54:00:00:00:09 dev sctest-rss
            """
        )
        var buffer = [UInt8](repeating: 0, count: 2048)
        for (kind, protocolNumber) in [(SOCK_DGRAM, UInt8(17)), (SOCK_STREAM, UInt8(6))] {
            for sourcePort in UInt16(40001)...40012 {
                // One datagram or SYN per flow, from a fresh socket bound to the source port.
                let socketFD = socket(AF_INET, Int32(kind.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
                defer { close(socketFD) }
                var local = sockaddr_in(
                    sin_family: sa_family_t(AF_INET), sin_port: sourcePort.bigEndian,
                    sin_addr: in_addr(s_addr: UInt32(0xa9fe_5b01).bigEndian), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
                var remote = local
                remote.sin_port = UInt16(9000).bigEndian
                remote.sin_addr.s_addr = UInt32(0xa9fe_5b02).bigEndian
                var reuse: Int32 = 1
                setsockopt(socketFD, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
                XCTAssertEqual(
                    withUnsafePointer(to: &local) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            bind(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                        }
                    }, 0)
                if protocolNumber == 17 {
                    let sent = withUnsafePointer(to: &remote) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(socketFD, "x", 1, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                        }
                    }
                    XCTAssertEqual(sent, 1)
                } else {
                    _ = withUnsafePointer(to: &remote) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            connect(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                        }
                    }
                }
                // Which queue has it: read every queue, keeping the frames of this flow (to port 9000),
                // until one has come.
                var arrivedOn = Set<Int>()
                XCTAssertTrue(
                    eventually {
                        for (queue, fd) in device.tapFDs.enumerated() {
                            while true {
                                let count = read(fd, &buffer, buffer.count)
                                guard count > 0 else { break }
                                let frame = Array(buffer[NetDevice.headerSize..<count])
                                if frame.count >= 38 && frame[23] == protocolNumber
                                    && frame[34] == UInt8(sourcePort >> 8)
                                    && frame[35] == UInt8(sourcePort & 0xff) && frame[36] == 0x23 && frame[37] == 0x28
                                {
                                    arrivedOn.insert(queue)
                                }
                            }
                        }
                        return !arrivedOn.isEmpty
                    }, "protocol \(protocolNumber), flow from port \(sourcePort) reached the TAP")
                let input = ToeplitzHash.flowInput(
                    source: [169, 254, 91, 1], destination: [169, 254, 91, 2], ports: (sourcePort, 9000))
                XCTAssertEqual(
                    arrivedOn, [ToeplitzHash.queue(of: ToeplitzHash().hash(input), queues: 2)],
                    "protocol \(protocolNumber), flow from port \(sourcePort)")
            }
        }
    }
}
