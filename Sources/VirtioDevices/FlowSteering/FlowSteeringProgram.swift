import CKVM
import Glibc

/// Virtual receive-side scaling (Dong et al.): an eBPF program the TAP runs for each frame it is
/// about to queue for us (TUNSETSTEERINGEBPF), returning the queue: the Toeplitz hash of the
/// frame's flow (IPv4 or IPv6 addresses, plus TCP or UDP ports unless it is a fragment) through
/// the default indirection table. One flow always lands on one TAP queue, which one queue pair
/// handler reads into its receive queue, so its frames stay in order on one vCPU; different flows
/// spread. Frames of other protocols go to queue 0.
///
/// The program is generated here, not compiled: the hash is unrolled bit by bit with the key's
/// windows as constants (3 instructions per input bit, about 1,300 in all, no loops for the
/// verifier to bound), and packet bytes are read with bpf_skb_load_bytes_relative from the MAC
/// header, which the TAP and BPF_PROG_TEST_RUN both set.
public final class FlowSteeringProgram: Sendable {
    public let queues: Int
    public let hash: ToeplitzHash
    let fd: Int32

    public init(queues: Int, hash: ToeplitzHash = ToeplitzHash()) throws {
        precondition(queues >= 1 && hash.maximumInputLength >= 36)
        self.queues = queues
        self.hash = hash
        let instructions = Self.instructions(queues: queues, hash: hash)
        let code = instructions.flatMap(\.encoded)
        var log = [CChar](repeating: 0, count: 64 * 1024)
        let fd = code.withUnsafeBytes {
            ckvm_bpf_load_socket_filter($0.baseAddress, UInt32(instructions.count), &log, UInt32(log.count))
        }
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            let verifier = String(decoding: log.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let lastLine = verifier.split(separator: "\n").last.map { " (verifier: \($0))" } ?? ""
            throw FlowSteeringError(description: "cannot load the flow-steering eBPF program: \(reason)\(lastLine)")
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Makes the TAP behind `tapFD` (any of its queues) steer with this program.
    public func attach(toTAP tapFD: Int32) throws {
        guard ckvm_tap_set_steering_program(tapFD, fd) == 0 else {
            throw FlowSteeringError(
                description: "cannot attach the flow-steering program to the TAP: \(String(cString: strerror(errno)))")
        }
    }

    /// Runs the program in the kernel on an Ethernet frame: the queue the TAP would pick.
    public func queue(forFrame frame: [UInt8]) throws -> Int {
        var result: UInt32 = 0
        guard frame.withUnsafeBytes({ ckvm_bpf_test_run(fd, $0.baseAddress, UInt32($0.count), &result) }) == 0 else {
            throw FlowSteeringError(description: "BPF_PROG_TEST_RUN: \(String(cString: strerror(errno)))")
        }
        return Int(result)
    }

    // MARK: The program

    private static let helperLoadBytesRelative: Int32 = 68  // BPF_FUNC_skb_load_bytes_relative
    private static let fromMACHeader: Int32 = 0  // BPF_HDR_START_MAC
    private static let etherTypeIPv4: Int32 = 0x0008, etherTypeIPv6: Int32 = 0xdd86  // as read little-endian
    // Stack: the EtherType at fp-8, up to 40 bytes of IP header at fp-56, the 4 port bytes at fp-64.
    private static let etherTypeSlot: Int16 = -8, headerSlot: Int16 = -56, portsSlot: Int16 = -64
    // Registers: r6 the frame (context), r7 the hash, r8 whether ports were read.
    private static let frame: UInt8 = 6, hashRegister: UInt8 = 7, hasPorts: UInt8 = 8, framePointer: UInt8 = 10

    /// An instruction, or a jump to a label resolved once the program is laid out.
    private enum Item {
        case instruction(BPFInstruction)
        case jump(BPFInstruction.Jump, register: UInt8, immediate: Int32, to: String)
        case label(String)
    }

    static func instructions(queues: Int, hash: ToeplitzHash) -> [BPFInstruction] {
        var items: [Item] = []
        func emit(_ instruction: BPFInstruction) { items.append(.instruction(instruction)) }
        func jump(_ op: BPFInstruction.Jump, _ register: UInt8, _ immediate: Int32, to label: String) {
            items.append(.jump(op, register: register, immediate: immediate, to: label))
        }
        /// r0 = bpf_skb_load_bytes_relative(frame, offset (imm or register), fp+slot, length, MAC).
        func loadBytes(offsetRegister: UInt8? = nil, offset: Int32 = 0, into slot: Int16, length: Int32) {
            emit(.alu64(.move, 1, register: frame))
            if let offsetRegister {
                emit(.alu64(.move, 2, register: offsetRegister))
            } else {
                emit(.alu64(.move, 2, offset))
            }
            emit(.alu64(.move, 3, register: framePointer))
            emit(.alu64(.add, 3, Int32(slot)))
            emit(.alu64(.move, 4, length))
            emit(.alu64(.move, 5, fromMACHeader))
            emit(.call(helper: helperLoadBytesRelative))
        }
        /// hash ^= key window of every set bit of `count` stack bytes at `slot`, input bits from `firstBit`.
        func hashBytes(at slot: Int16, count: Int, firstBit: Int) {
            for index in 0..<count {
                emit(.load(BPFInstruction.sizeByte, 0, from: framePointer, offset: slot + Int16(index)))
                for bit in 0..<8 {
                    emit(.jump(.bitSet, 0, Int32(0x80 >> bit), skip: 1))
                    emit(.jump(skip: 1))
                    emit(.alu32(.xor, hashRegister, hash.window(at: firstBit + index * 8 + bit)))
                }
            }
        }
        /// Ports (when r8 says they were read) then the queue.
        func finish(portsBit: Int) {
            jump(.equal, hasPorts, 0, to: "done")
            hashBytes(at: portsSlot, count: 4, firstBit: portsBit)
            jump(.always, 0, 0, to: "done")
        }
        /// r8 = 1 when the 4 port bytes at `offset` (or the offset in r2's source register) were read.
        func readPorts(offsetRegister: UInt8? = nil, offset: Int32 = 0, skipTo label: String) {
            loadBytes(offsetRegister: offsetRegister, offset: offset, into: portsSlot, length: 4)
            jump(.notEqual, 0, 0, to: label)
            emit(.alu64(.move, hasPorts, 1))
        }

        /// At label `family`: reads the IP header to the stack, then goes on at "<family>-transport"
        /// for TCP (6) and UDP (17), else jumps to "<family>-hash" (addresses only).
        func ipHeader(_ family: String, length: Int32, protocolAt offset: Int16) {
            items.append(.label(family))
            loadBytes(offset: 14, into: headerSlot, length: length)
            jump(.notEqual, 0, 0, to: "other")
            emit(.load(BPFInstruction.sizeByte, 1, from: framePointer, offset: headerSlot + offset))
            jump(.equal, 1, 6, to: "\(family)-transport")
            jump(.equal, 1, 17, to: "\(family)-transport")
            jump(.always, 0, 0, to: "\(family)-hash")
            items.append(.label("\(family)-transport"))
        }

        emit(.alu64(.move, frame, register: 1))
        emit(.alu32(.move, hashRegister, 0))
        emit(.alu64(.move, hasPorts, 0))
        loadBytes(offset: 12, into: etherTypeSlot, length: 2)
        jump(.notEqual, 0, 0, to: "other")
        emit(.load(BPFInstruction.sizeHalf, 0, from: framePointer, offset: etherTypeSlot))
        jump(.equal, 0, etherTypeIPv4, to: "ipv4")
        jump(.equal, 0, etherTypeIPv6, to: "ipv6")
        jump(.always, 0, 0, to: "other")

        // IPv4: 20 header bytes; ports only for TCP (6) and UDP (17) that are not fragments
        // (MF clear and offset 0: bytes 6-7 masked, read little-endian).
        ipHeader("ipv4", length: 20, protocolAt: 9)
        emit(.load(BPFInstruction.sizeHalf, 1, from: framePointer, offset: headerSlot + 6))
        jump(.bitSet, 1, 0xff3f, to: "ipv4-hash")
        emit(.load(BPFInstruction.sizeByte, 9, from: framePointer, offset: headerSlot))
        emit(.alu64(.and, 9, 0x0f))
        emit(.alu64(.leftShift, 9, 2))
        emit(.alu64(.add, 9, 14))
        readPorts(offsetRegister: 9, skipTo: "ipv4-hash")
        items.append(.label("ipv4-hash"))
        hashBytes(at: headerSlot + 12, count: 8, firstBit: 0)
        finish(portsBit: 64)

        // IPv6: 40 header bytes; ports when the next header is TCP or UDP (no extension headers).
        ipHeader("ipv6", length: 40, protocolAt: 6)
        readPorts(offset: 54, skipTo: "ipv6-hash")
        items.append(.label("ipv6-hash"))
        hashBytes(at: headerSlot + 8, count: 32, firstBit: 0)
        finish(portsBit: 256)

        // Queue = indirection table entry (hash mod 128), whose default is entry mod queues.
        items.append(.label("done"))
        emit(.alu64(.move, 0, register: hashRegister))
        emit(.alu64(.and, 0, Int32(ToeplitzHash.indirectionEntries - 1)))
        emit(.alu64(.modulo, 0, Int32(queues)))
        emit(.exit)
        items.append(.label("other"))
        emit(.alu64(.move, 0, 0))
        emit(.exit)

        // Lay out: labels take no space; a jump's offset counts from the next instruction.
        var positions: [String: Int] = [:]
        var position = 0
        for item in items {
            if case .label(let name) = item { positions[name] = position } else { position += 1 }
        }
        var program: [BPFInstruction] = []
        for item in items {
            switch item {
            case .instruction(let instruction): program.append(instruction)
            case .jump(let op, let register, let immediate, let label):
                let target = positions[label]!
                program.append(.jump(op, register, immediate, skip: Int16(target - program.count - 1)))
            case .label: break
            }
        }
        return program
    }
}

/// The flow-steering program could not be loaded or attached: names the reason.
public struct FlowSteeringError: Error, CustomStringConvertible {
    public let description: String
}
