import Glibc
import Hypervisor
@testable import VirtioDevices

/// The MSI-X table and pending-bit array: every width and offset, masks, raises. Invariant:
/// interrupts delivered never exceed those raised, and a vector the table lacks is never fired.
enum MSIXTableTarget {
    static func run(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let vectorCount = Int(input.u8() % 8) + 1
        let table = try! MSIXTable(vectorCount: vectorCount, router: FakeMSIRouter())
        var raises = 0
        var scratch = [UInt8](repeating: 0, count: 8)
        while !input.isExhausted {
            let operation = input.u8()
            let width = [1, 2, 4, 8][Int(operation >> 6)]
            let offset = UInt64(input.u16() % 0x200)
            switch operation & 3 {
            case 0:
                let value = input.u64()
                for index in 0..<width { scratch[index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
                try? scratch.withUnsafeBytes {
                    try table.writeTable(offset: offset, data: UnsafeRawBufferPointer(rebasing: $0[0..<width]))
                }
            case 1:
                scratch.withUnsafeMutableBytes {
                    let view = UnsafeMutableRawBufferPointer(rebasing: $0[0..<width])
                    if operation & 4 != 0 {
                        table.readTable(offset: offset, into: view)
                    } else {
                        table.readPendingBits(offset: offset, into: view)
                    }
                }
            case 2:
                table.setControl(enabled: operation & 4 != 0, functionMasked: operation & 8 != 0)
            default:
                raises += 1
                table.raise(vector: Int(offset % UInt64(vectorCount + 2)))
            }
        }
        // What the vectors' irqfds were signalled: what KVM would have delivered.
        let delivered = table.eventfds.reduce(0) { total, eventfd in
            var ready = pollfd(fd: eventfd.fd, events: Int16(POLLIN), revents: 0)
            return total + (poll(&ready, 1, 0) == 1 ? Int(eventfd.wait()) : 0)
        }
        invariant(delivered <= raises, "\(delivered) interrupts delivered for \(raises) raised")
    }
}
