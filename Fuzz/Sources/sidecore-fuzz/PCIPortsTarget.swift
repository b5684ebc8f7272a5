import Hypervisor
@testable import VirtioDevices

/// PCI configuration through ports 0xCF8-0xCFF and BAR decoding in the MMIO window, as a guest
/// reaches them, with a host bridge and a virtio function on the bus (BARs moved, sized to all
/// ones, decoding toggled). Invariant: no access traps; unclaimed reads return all ones.
enum PCIPortsTarget {
    static func run(_ data: UnsafeRawBufferPointer) {
        var input = FuzzInput(data)
        let ports = IOBus()
        let mmio = IOBus()
        let root = PCIRoot()
        _ = root.add(PCIHostBridge())
        var configuration = BlockDeviceConfiguration(path: nil, id: "fuzz")
        configuration.backend = .null
        let device = try! BlockDevice(configuration: configuration, name: "blk-fuzz")
        let transport = try! VirtioPCITransport(
            device: device, name: "blk-fuzz", root: root, vm: FakeIOEventFDs(),
            router: FakeMSIRouter(), memory: FuzzRAM.shared.memory, engine: InlineEngine(coalescing: false))
        _ = root.add(transport)
        try! root.attach(portBus: ports, mmioBus: mmio)
        var scratch = [UInt8](repeating: 0, count: 8)
        while !input.isExhausted {
            let operation = input.u8()
            let isPort = operation & 1 == 0
            let width = isPort ? [1, 2, 4, 4][Int(operation >> 6)] : [1, 2, 4, 8][Int(operation >> 6)]
            let address =
                isPort
                ? PCIRoot.configAddressPort + UInt64(input.u8() % 8) : PCIRoot.mmioWindowStart + UInt64(input.u32())
            let bus = isPort ? ports : mmio
            if operation & 2 == 0 {
                let value = input.u64()
                for index in 0..<width { scratch[index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
                scratch.withUnsafeBytes { bus.write(address, data: UnsafeRawBufferPointer(rebasing: $0[0..<width])) }
            } else {
                scratch.withUnsafeMutableBytes {
                    bus.read(address, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<width]))
                }
            }
        }
        transport.deactivate()
    }
}
