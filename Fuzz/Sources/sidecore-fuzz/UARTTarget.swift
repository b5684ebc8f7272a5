@testable import Hypervisor

/// The 16550 UART's registers, written and read in any order. Invariant: the receive FIFO never
/// holds more than its capacity, loopback included. The FIFO holds 64 bytes here instead of
/// 4096, the same code with a bound a flood reaches in 72 writes instead of 4104, so runs are fast.
enum UARTTarget {
    static let capacity = 64

    static func run(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let uart = Serial16550(output: { _ in }, setIRQLevel: { _ in }, capacity: capacity)
        func read(_ offset: UInt64) -> UInt8 {
            var value: UInt8 = 0
            withUnsafeMutableBytes(of: &value) { uart.read(offset: offset, into: $0) }
            return value
        }
        while !input.isExhausted {
            let operation = input.u8()
            let offset = UInt64(operation & 7)
            switch operation >> 6 {
            case 0, 1:
                var value = input.u8()
                // Now and then a flood past the FIFO's capacity, as a guest loop would write.
                let repeats = operation & 0x40 != 0 ? capacity + 8 : 1
                for _ in 0..<repeats { withUnsafeBytes(of: &value) { uart.write(offset: offset, data: $0) } }
            case 2:
                _ = read(offset)
            default:
                // Console input only into an empty FIFO: enqueueInput waits while the FIFO is full.
                if read(5) & 1 == 0 { uart.enqueueInput(Array(input.take(Int(input.u8() % 64)))) }
            }
        }
        var drained = 0
        write(uart, offset: 3, value: 0)  // divisor latch off, so offset 0 is RBR
        while read(5) & 1 != 0 && drained <= capacity {
            _ = read(0)
            drained += 1
        }
        invariant(drained <= capacity, "receive FIFO held more than its capacity")
    }

    static func write(_ uart: Serial16550, offset: UInt64, value: UInt8) {
        var value = value
        withUnsafeBytes(of: &value) { uart.write(offset: offset, data: $0) }
    }
}
