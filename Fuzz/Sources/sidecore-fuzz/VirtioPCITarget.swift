import Hypervisor
@testable import VirtioDevices

/// The virtio-pci function of a (null-backed) virtio-blk device: configuration space, the
/// common-config register file and lifecycle, notify, ISR, device config, MSI-X, with the
/// handlers polled inline. Invariants: the engine never has a handler twice nor more than the
/// queues; doorbells are registered at most once each and all removed by a reset; after status 0
/// nothing is attached; activations and resets balance; shutdown leaves nothing behind.
enum VirtioPCITarget {
    static let queueCount = 2

    static func run(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let flags = input.u8()
        let ram = FuzzRAM.shared
        try! ram.memory.zero(at: 0, length: FuzzRAM.size)
        try! ram.memory.write(input.take(Int(input.u16() % 0x2000)), at: 0)
        var configuration = BlockDeviceConfiguration(path: nil, id: "fuzz")
        configuration.backend = .null
        configuration.nullSizeInBytes = 1 << 20
        configuration.queueCount = queueCount
        let device = try! BlockDevice(configuration: configuration, name: "blk-fuzz")
        let doorbells = FakeIOEventFDs()
        let engine = InlineEngine(coalescing: flags & 1 != 0)
        let transport = try! VirtioPCITransport(
            device: device, name: "blk-fuzz", root: PCIRoot(), vm: doorbells,
            router: FakeMSIRouter(), memory: ram.memory, engine: engine)
        var scratch = [UInt8](repeating: 0, count: 8)
        while !input.isExhausted {
            let operation = input.u8()
            let width = [1, 2, 4, 8][Int(operation >> 6)]
            switch operation & 7 {
            case 0, 1:
                // Mostly the common configuration, sometimes anywhere in the BAR.
                let offset = operation & 8 != 0 ? UInt64(input.u16()) : UInt64(input.u8() % 0x40)
                let value = input.u64()
                for index in 0..<width { scratch[index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
                scratch.withUnsafeBytes {
                    transport.barWrite(index: 0, offset: offset, data: UnsafeRawBufferPointer(rebasing: $0[0..<width]))
                }
                if offset == 0x14 && width == 1 && value & 0xFF == 0 {
                    invariant(engine.handlers.isEmpty, "handlers still attached after a reset")
                    invariant(doorbells.registered.isEmpty, "doorbells still registered after a reset")
                }
            case 2:
                let offset = operation & 8 != 0 ? UInt64(input.u16()) : UInt64(input.u8() % 0x40)
                scratch.withUnsafeMutableBytes {
                    transport.barRead(
                        index: 0, offset: offset, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<width]))
                }
            case 3:
                let offset = Int(input.u8())
                transport.configurationWrite(
                    offset: offset & ~(min(width, 4) - 1), width: min(width, 4), value: input.u32())
            case 4:
                _ = transport.configurationRead(offset: Int(input.u8()) & ~(min(width, 4) - 1), width: min(width, 4))
            case 5:
                for handler in engine.handlers {
                    let done = handler.poll(budget: 32)
                    invariant(done <= 64, "\(handler.name) did \(done) units of work with a budget of 32")
                }
            case 6:
                transport.raiseQueueInterrupt(Int(input.u8() % 4))
            default:
                transport.markNeedsReset("fuzz")
            }
            invariant(engine.handlers.count <= queueCount, "\(engine.handlers.count) handlers for \(queueCount) queues")
            invariant(
                doorbells.registered.count <= queueCount,
                "\(doorbells.registered.count) doorbells for \(queueCount) queues")
        }
        transport.deactivate()
        invariant(engine.handlers.isEmpty && doorbells.registered.isEmpty, "shutdown left handlers or doorbells")
    }
}
