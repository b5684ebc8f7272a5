import Glibc
import Synchronization

/// A 16550A UART (8 ports from its base, COM1 at 0x3F8 on IRQ 4).
///
/// Transmit is immediate: every byte written to THR goes to `output` and THR is empty again at once.
/// Receive has a FIFO fed by `enqueueInput`, which waits while the FIFO is full so no input is dropped.
/// The interrupt line follows the pending state (level), which the edge-triggered ISA IRQ turns
/// into one interrupt per rising edge, as Linux's 8250 driver expects.
public final class Serial16550: BusDevice, Sendable {
    public static let com1Base: UInt64 = 0x3F8
    public static let com1IRQ: UInt32 = 4
    static let receiveCapacity = 4096
    /// Bytes the receive FIFO holds (`receiveCapacity`; smaller in the fuzz target, which floods it).
    let capacity: Int

    private struct Registers {
        var interruptEnable: UInt8 = 0
        var lineControl: UInt8 = 0
        var modemControl: UInt8 = 0x08  // OUT2
        var scratch: UInt8 = 0
        var divisorLow: UInt8 = 0x0C  // 9600 baud
        var divisorHigh: UInt8 = 0
        var fifoControl: UInt8 = 0
        var transmitInterruptPending = false
        var receive: [UInt8] = []
        var receiveHead = 0
        var irqLevel = false
        /// A byte was lost because the receive FIFO was full (LSR bit 1, cleared by reading LSR).
        var overrun = false

        var receiveCount: Int { receive.count - receiveHead }
    }

    private let state = Lock(Registers())
    private let output: @Sendable (UInt8) -> Void
    private let setIRQLevel: @Sendable (Bool) -> Void

    /// - Parameters:
    ///   - output: receives each transmitted byte, on the vCPU thread that wrote it.
    ///   - setIRQLevel: drives the UART's interrupt line.
    public convenience init(
        output: @escaping @Sendable (UInt8) -> Void, setIRQLevel: @escaping @Sendable (Bool) -> Void
    ) {
        self.init(output: output, setIRQLevel: setIRQLevel, capacity: Self.receiveCapacity)
    }

    init(output: @escaping @Sendable (UInt8) -> Void, setIRQLevel: @escaping @Sendable (Bool) -> Void, capacity: Int) {
        self.output = output
        self.setIRQLevel = setIRQLevel
        self.capacity = capacity
    }

    /// Queues input bytes for the guest; blocks while the receive FIFO is full.
    public func enqueueInput(_ bytes: [UInt8]) {
        var remaining = bytes[...]
        while !remaining.isEmpty {
            let accepted = state.withLock { registers -> Int in
                let room = max(0, capacity - registers.receiveCount)
                let chunk = remaining.prefix(room)
                registers.receive.append(contentsOf: chunk)
                return chunk.count
            }
            remaining = remaining.dropFirst(accepted)
            updateInterrupt()
            if !remaining.isEmpty { usleep(2000) }  // the guest drains the FIFO as it reads RBR
        }
    }

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        let value = state.withLock { registers -> UInt8 in
            let divisorLatch = registers.lineControl & 0x80 != 0
            switch offset {
            case 0 where divisorLatch: return registers.divisorLow
            case 0:
                guard registers.receiveCount > 0 else { return 0 }
                let byte = registers.receive[registers.receiveHead]
                registers.receiveHead += 1
                if registers.receiveHead == registers.receive.count || registers.receiveHead > 1024 {
                    registers.receive.removeFirst(registers.receiveHead)
                    registers.receiveHead = 0
                }
                return byte
            case 1 where divisorLatch: return registers.divisorHigh
            case 1: return registers.interruptEnable
            case 2:
                let identification = Self.interruptIdentification(registers)
                // Reading IIR while it reports "THR empty" acknowledges that interrupt.
                if identification == 0x02 { registers.transmitInterruptPending = false }
                let fifoBits: UInt8 = registers.fifoControl & 0x01 != 0 ? 0xC0 : 0
                return identification | fifoBits
            case 3: return registers.lineControl
            case 4: return registers.modemControl
            case 5:
                // THR and transmitter always empty; data ready when the FIFO holds input.
                defer { registers.overrun = false }
                return 0x60 | (registers.receiveCount > 0 ? 0x01 : 0) | (registers.overrun ? 0x02 : 0)
            case 6:
                if registers.modemControl & 0x10 != 0 {
                    // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
                    let mcr = registers.modemControl
                    return (mcr & 0x01) << 5 | (mcr & 0x02) << 3 | (mcr & 0x04) << 4 | (mcr & 0x08) << 4
                }
                return 0xB0  // DCD, DSR, CTS: a terminal is connected
            default: return registers.scratch
            }
        }
        data.initializeMemory(as: UInt8.self, repeating: 0)
        data[0] = value
        updateInterrupt()
    }

    public func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        guard let value = data.first else { return }
        var transmitted: UInt8?
        state.withLock { registers in
            let divisorLatch = registers.lineControl & 0x80 != 0
            switch offset {
            case 0 where divisorLatch: registers.divisorLow = value
            case 0:
                if registers.modemControl & 0x10 != 0 {
                    // Loopback: into the receive FIFO while it has room, else lost as an overrun,
                    // as on the hardware, so a guest cannot grow host memory through it.
                    if registers.receiveCount < capacity {
                        registers.receive.append(value)
                    } else {
                        registers.overrun = true
                    }
                } else {
                    transmitted = value
                }
                registers.transmitInterruptPending = true
            case 1 where divisorLatch: registers.divisorHigh = value
            case 1:
                // Enabling the THR-empty interrupt raises it at once: the transmitter is always empty.
                if value & 0x02 != 0 && registers.interruptEnable & 0x02 == 0 {
                    registers.transmitInterruptPending = true
                }
                registers.interruptEnable = value & 0x0F
            case 2:
                registers.fifoControl = value
                if value & 0x02 != 0 { registers.receive.removeAll(); registers.receiveHead = 0 }
            case 3: registers.lineControl = value
            case 4: registers.modemControl = value & 0x1F
            case 7: registers.scratch = value
            default: break
            }
        }
        if let transmitted { output(transmitted) }
        updateInterrupt()
    }

    /// IIR's low bits: 0x04 received data, 0x02 THR empty, 0x01 nothing pending.
    private static func interruptIdentification(_ registers: Registers) -> UInt8 {
        if registers.interruptEnable & 0x01 != 0 && registers.receiveCount > 0 { return 0x04 }
        if registers.interruptEnable & 0x02 != 0 && registers.transmitInterruptPending { return 0x02 }
        return 0x01
    }

    private func updateInterrupt() {
        state.withLock { registers in
            // OUT2 gates the UART's interrupt onto the ISA bus on PC hardware.
            let level = Self.interruptIdentification(registers) != 0x01 && registers.modemControl & 0x08 != 0
            if level != registers.irqLevel {
                // Under the lock, so two vCPUs cannot deliver level changes out of order.
                registers.irqLevel = level
                setIRQLevel(level)
            }
        }
    }
}
