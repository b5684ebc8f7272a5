import Hypervisor

/// One eBPF instruction as the kernel's `struct bpf_insn` lays it out (8 bytes), with just the
/// forms the flow-steering program needs. Registers: r0 result, r1-r5 helper arguments
/// (clobbered by calls), r6-r9 kept across calls, r10 the read-only frame pointer.
struct BPFInstruction: Equatable {
    var code: UInt8
    var registers: UInt8  // destination in the low nibble, source in the high one
    var offset: Int16
    var immediate: Int32

    init(code: UInt8, destination: UInt8 = 0, source: UInt8 = 0, offset: Int16 = 0, immediate: Int32 = 0) {
        self.code = code
        registers = destination & 0x0f | source << 4
        self.offset = offset
        self.immediate = immediate
    }

    /// The 8 bytes the kernel reads (x86-64: little-endian offset and immediate).
    var encoded: [UInt8] {
        let offsetBits = UInt16(bitPattern: offset), immediateBits = UInt32(bitPattern: immediate)
        return [code, registers] + LittleEndian.bytes(offsetBits) + LittleEndian.bytes(immediateBits)
    }

    // Instruction classes, operations and modes from linux/bpf.h and linux/bpf_common.h.
    static let classALU32: UInt8 = 0x04, classALU64: UInt8 = 0x07, classJump: UInt8 = 0x05, classLoadX: UInt8 = 0x01
    static let sourceImmediate: UInt8 = 0x00, sourceRegister: UInt8 = 0x08
    static let sizeWord: UInt8 = 0x00, sizeHalf: UInt8 = 0x08, sizeByte: UInt8 = 0x10
    static let modeMemory: UInt8 = 0x60

    enum ALU: UInt8 { case add = 0x00, and = 0x50, leftShift = 0x60, modulo = 0x90, xor = 0xa0, move = 0xb0 }
    enum Jump: UInt8 {
        case always = 0x00, equal = 0x10, greater = 0x20, bitSet = 0x40, notEqual = 0x50, call = 0x80, exit = 0x90
    }

    /// dst = dst OP imm, on 64 bits.
    static func alu64(_ op: ALU, _ destination: UInt8, _ immediate: Int32) -> Self {
        Self(code: classALU64 | op.rawValue | sourceImmediate, destination: destination, immediate: immediate)
    }
    /// dst = dst OP src, on 64 bits.
    static func alu64(_ op: ALU, _ destination: UInt8, register source: UInt8) -> Self {
        Self(code: classALU64 | op.rawValue | sourceRegister, destination: destination, source: source)
    }
    /// dst = dst OP imm, on 32 bits (the upper half becomes zero): XOR with a full 32-bit key window.
    static func alu32(_ op: ALU, _ destination: UInt8, _ immediate: UInt32) -> Self {
        Self(
            code: classALU32 | op.rawValue | sourceImmediate, destination: destination,
            immediate: Int32(bitPattern: immediate))
    }
    /// Skips `offset` instructions when dst OP imm holds.
    static func jump(_ op: Jump, _ destination: UInt8, _ immediate: Int32, skip offset: Int16) -> Self {
        Self(
            code: classJump | op.rawValue | sourceImmediate, destination: destination, offset: offset,
            immediate: immediate)
    }
    static func jump(skip offset: Int16) -> Self { Self(code: classJump | Jump.always.rawValue, offset: offset) }
    static func call(helper: Int32) -> Self { Self(code: classJump | Jump.call.rawValue, immediate: helper) }
    static let exit = Self(code: classJump | Jump.exit.rawValue)
    /// dst = *(size *)(src + offset).
    static func load(_ size: UInt8, _ destination: UInt8, from source: UInt8, offset: Int16) -> Self {
        Self(code: classLoadX | modeMemory | size, destination: destination, source: source, offset: offset)
    }
}
