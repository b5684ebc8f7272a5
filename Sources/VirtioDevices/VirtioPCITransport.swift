import Hypervisor
import Synchronization

/// A modern (non-transitional) virtio-pci function: the standard vendor capabilities (common,
/// notify, ISR, device config) and MSI-X, all in one 64-bit memory BAR; status and feature
/// negotiation; queue setup; and activation of the device at DRIVER_OK with each queue's
/// doorbell as an ioeventfd, so a guest kick never exits to userspace.
public final class VirtioPCITransport: PCIDevice, Sendable {
    // BAR 0 layout.
    static let commonOffset: UInt64 = 0x0000
    static let isrOffset: UInt64 = 0x1000
    static let deviceConfigOffset: UInt64 = 0x2000
    static let notifyOffset: UInt64 = 0x3000
    static let notifyMultiplier: UInt32 = 4
    static let msixTableOffset: UInt64 = 0x8000
    static let msixPendingOffset: UInt64 = 0xC000
    static let barSize: UInt64 = 0x10000
    static let noVector: UInt16 = 0xFFFF

    // Device status bits (the lifecycle itself: DeviceStatusTransition).
    static let driverOK = DeviceStatusTransition.driverOK
    static let featuresOK = DeviceStatusTransition.featuresOK
    static let needsReset = DeviceStatusTransition.needsReset

    struct QueueRegisters {
        var size: UInt16
        var vector: UInt16 = VirtioPCITransport.noVector
        var enabled = false
        var descriptorTable: UInt64 = 0
        var driverArea: UInt64 = 0
        var deviceArea: UInt64 = 0
    }

    struct State {
        var status: UInt8 = 0
        var deviceFeatureSelect: UInt32 = 0
        var driverFeatureSelect: UInt32 = 0
        var driverFeatures: UInt64 = 0
        var configVector: UInt16 = VirtioPCITransport.noVector
        var queueSelect: UInt16 = 0
        var queues: [QueueRegisters]
        var configGeneration: UInt8 = 0
        var isr: UInt8 = 0
    }

    /// What a DRIVER_OK started and the next reset tears down. Only touched under `lifecycle`.
    struct Activation {
        /// Queue index and notify address of each ioeventfd registered at DRIVER_OK.
        var doorbells: [(queue: Int, address: UInt64)] = []
        /// What the device returned at DRIVER_OK, running on `engine` until reset.
        var handlers: [QueueHandler] = []
    }

    public let device: VirtioDevice
    public let name: String
    let offeredFeatures: UInt64
    private let vm: IOEventFDRegistry
    private let memory: GuestMemory
    private let engine: QueueEngine
    let msix: MSIXTable
    private let kicks: [EventFD]
    private let space: Lock<PCIConfigurationSpace>
    private let state: Lock<State>
    /// Serializes the device's lifecycle: a status write (activation, reset) runs whole under it,
    /// so a reset on one vCPU and a re-negotiation on another never overlap. Per device, and
    /// never taken by the threads that run handlers, so waiting under it involves only this VM.
    private let lifecycle = Lock(Activation())
    private let msixCapabilityOffset: Int

    public init(device: VirtioDevice, name: String, root: PCIRoot, vm: IOEventFDRegistry, router: MSIRouting, memory: GuestMemory,
                engine: QueueEngine) throws {
        self.device = device
        self.engine = engine
        self.name = name
        self.vm = vm
        self.memory = memory
        self.offeredFeatures = device.deviceFeatures | VirtioFeature.transport
        let queueCount = device.queueMaxSizes.count
        msix = try MSIXTable(vectorCount: queueCount + 1, router: router)
        kicks = try device.queueMaxSizes.map { _ in try EventFD(nonBlocking: true) }
        state = Lock(State(queues: device.queueMaxSizes.map { QueueRegisters(size: $0) }))

        var space = PCIConfigurationSpace(vendorID: 0x1AF4, deviceID: 0x1040 + device.deviceType, classCode: device.pciClassCode,
                                          subsystemVendorID: 0x1AF4, subsystemID: 0x40)
        space.addMemoryBAR64(index: 0, address: root.allocateBARAddress(sizeInBytes: Self.barSize), sizeInBytes: Self.barSize)
        func virtioCapability(type: UInt8, offset: UInt64, length: UInt32, extra: [UInt8] = []) -> [UInt8] {
            // cap_len, cfg_type, bar, id, padding[2], offset, length (+ notify multiplier)
            [UInt8(16 + extra.count), type, 0, 0, 0, 0] + LittleEndian.bytes(UInt32(offset)) + LittleEndian.bytes(length) + extra
        }
        space.addCapability(id: 0x09, body: virtioCapability(type: 1, offset: Self.commonOffset, length: 0x40))
        space.addCapability(id: 0x09, body: virtioCapability(type: 2, offset: Self.notifyOffset, length: UInt32(queueCount) * Self.notifyMultiplier,
                                                             extra: LittleEndian.bytes(Self.notifyMultiplier)))
        space.addCapability(id: 0x09, body: virtioCapability(type: 3, offset: Self.isrOffset, length: 1))
        space.addCapability(id: 0x09, body: virtioCapability(type: 4, offset: Self.deviceConfigOffset, length: 0x100))
        // MSI-X: table size - 1, then table and PBA offsets in BAR 0; enable and function mask are writable.
        msixCapabilityOffset = space.addCapability(
            id: 0x11, body: LittleEndian.bytes(UInt16(queueCount)) + LittleEndian.bytes(UInt32(Self.msixTableOffset)) + LittleEndian.bytes(UInt32(Self.msixPendingOffset)),
            writableMask: [0x00, 0xC0])
        self.space = Lock(space)
        device.transportNeedsReset = { [unowned self] reason in self.markNeedsReset(reason) }
    }

    // MARK: PCIDevice

    public func configurationRead(offset: Int, width: Int) -> UInt32 {
        space.withLock { $0.read(offset: offset, width: width) }
    }

    public func configurationWrite(offset: Int, width: Int, value: UInt32) {
        let control = space.withLock { space -> UInt16 in
            space.write(offset: offset, width: width, value: value)
            return UInt16(space.read(offset: msixCapabilityOffset + 2, width: 2))
        }
        msix.setControl(enabled: control & 0x8000 != 0, functionMasked: control & 0x4000 != 0)
    }

    public func memoryBARs() -> [(index: Int, address: UInt64, sizeInBytes: UInt64)] {
        space.withLock { space in
            space.memoryDecodingEnabled ? [(0, space.barAddress(index: 0), Self.barSize)] : []
        }
    }

    public func barRead(index: Int, offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        data.initializeMemory(as: UInt8.self, repeating: 0)
        switch offset {
        case Self.commonOffset..<(Self.commonOffset + 0x40):
            let value = readCommon(offset: offset - Self.commonOffset)
            LittleEndian.store(value, into: data)
        case Self.isrOffset:
            // Reading ISR returns and clears it.
            data[0] = state.withLock { state in defer { state.isr = 0 }; return state.isr }
        case Self.deviceConfigOffset..<(Self.deviceConfigOffset + 0x100):
            device.readConfiguration(offset: Int(offset - Self.deviceConfigOffset), into: data)
        case Self.msixTableOffset..<(Self.msixTableOffset + UInt64(msix.vectorCount * MSIXTable.entrySize)):
            msix.readTable(offset: offset - Self.msixTableOffset, into: data)
        case Self.msixPendingOffset..<(Self.msixPendingOffset + 0x100):
            msix.readPendingBits(offset: offset - Self.msixPendingOffset, into: data)
        default:
            break
        }
    }

    public func barWrite(index: Int, offset: UInt64, data: UnsafeRawBufferPointer) {
        let value = LittleEndian.value(of: data)
        switch offset {
        case Self.commonOffset..<(Self.commonOffset + 0x40):
            writeCommon(offset: offset - Self.commonOffset, width: data.count, value: value)
        case Self.deviceConfigOffset..<(Self.deviceConfigOffset + 0x100):
            device.writeConfiguration(offset: Int(offset - Self.deviceConfigOffset), data: data)
        case Self.notifyOffset..<(Self.notifyOffset + UInt64(kicks.count) * UInt64(Self.notifyMultiplier)):
            // Only reached before DRIVER_OK registers the ioeventfds: ring the same doorbell.
            kicks[Int((offset - Self.notifyOffset) / UInt64(Self.notifyMultiplier))].signal()
        case Self.msixTableOffset..<(Self.msixTableOffset + UInt64(msix.vectorCount * MSIXTable.entrySize)):
            do {
                try msix.writeTable(offset: offset - Self.msixTableOffset, data: data)
            } catch {
                markNeedsReset("MSI-X route update failed: \(error)")
            }
        default:
            break
        }
    }

    // MARK: Common configuration

    private func readCommon(offset: UInt64) -> UInt64 {
        state.withLock { state in
            let queue = Int(state.queueSelect) < state.queues.count ? state.queues[Int(state.queueSelect)] : nil
            switch offset {
            case 0x00: return UInt64(state.deviceFeatureSelect)
            case 0x04: return state.deviceFeatureSelect < 2 ? (offeredFeatures >> (32 * UInt64(state.deviceFeatureSelect))) & 0xFFFF_FFFF : 0
            case 0x08: return UInt64(state.driverFeatureSelect)
            case 0x0C: return state.driverFeatureSelect < 2 ? (state.driverFeatures >> (32 * UInt64(state.driverFeatureSelect))) & 0xFFFF_FFFF : 0
            case 0x10: return UInt64(state.configVector)
            case 0x12: return UInt64(state.queues.count)
            case 0x14: return UInt64(state.status)
            case 0x15: return UInt64(state.configGeneration)
            case 0x16: return UInt64(state.queueSelect)
            case 0x18: return UInt64(queue?.size ?? 0)
            case 0x1A: return UInt64(queue?.vector ?? Self.noVector)
            case 0x1C: return queue?.enabled == true ? 1 : 0
            case 0x1E: return UInt64(state.queueSelect)  // queue_notify_off: doorbell i at i * multiplier
            case 0x20: return queue?.descriptorTable ?? 0
            case 0x24: return (queue?.descriptorTable ?? 0) >> 32
            case 0x28: return queue?.driverArea ?? 0
            case 0x2C: return (queue?.driverArea ?? 0) >> 32
            case 0x30: return queue?.deviceArea ?? 0
            case 0x34: return (queue?.deviceArea ?? 0) >> 32
            default: return 0
            }
        }
    }

    private func writeCommon(offset: UInt64, width: Int, value: UInt64) {
        var statusWrite: UInt8?
        state.withLock { state in
            let selected = Int(state.queueSelect)
            let hasQueue = selected < state.queues.count
            // Queue registers may change only before DRIVER_OK (virtio 1.2, 4.1.4.3.2).
            let queueWritable = hasQueue && state.status & Self.driverOK == 0
            func setAddress(_ keyPath: WritableKeyPath<QueueRegisters, UInt64>, high: Bool) {
                guard queueWritable else { return }
                var address = state.queues[selected][keyPath: keyPath]
                if width == 8 {
                    address = value
                } else if high {
                    address = (address & 0xFFFF_FFFF) | (value & 0xFFFF_FFFF) << 32
                } else {
                    address = (address & ~0xFFFF_FFFF) | (value & 0xFFFF_FFFF)
                }
                state.queues[selected][keyPath: keyPath] = address
            }
            switch offset {
            case 0x00: state.deviceFeatureSelect = UInt32(truncatingIfNeeded: value)
            case 0x08: state.driverFeatureSelect = UInt32(truncatingIfNeeded: value)
            case 0x0C:
                guard state.status & Self.featuresOK == 0, state.driverFeatureSelect < 2 else { break }
                let shift = 32 * UInt64(state.driverFeatureSelect)
                state.driverFeatures = (state.driverFeatures & ~(0xFFFF_FFFF << shift)) | ((value & 0xFFFF_FFFF) << shift)
            case 0x10: state.configVector = usableVector(value)
            case 0x14: statusWrite = UInt8(truncatingIfNeeded: value)
            case 0x16: state.queueSelect = UInt16(truncatingIfNeeded: value)
            case 0x18:
                // A driver may shrink a queue, never grow it past the device's maximum.
                if queueWritable, value > 0, value <= UInt64(device.queueMaxSizes[selected]) {
                    state.queues[selected].size = UInt16(value)
                }
            case 0x1A: if hasQueue { state.queues[selected].vector = usableVector(value) }
            case 0x1C: if queueWritable, value == 1 { state.queues[selected].enabled = true }
            case 0x20: setAddress(\.descriptorTable, high: false)
            case 0x24: setAddress(\.descriptorTable, high: true)
            case 0x28: setAddress(\.driverArea, high: false)
            case 0x2C: setAddress(\.driverArea, high: true)
            case 0x30: setAddress(\.deviceArea, high: false)
            case 0x34: setAddress(\.deviceArea, high: true)
            default: break
            }
        }
        if let statusWrite { writeStatus(statusWrite) }
    }

    /// A vector number the driver wrote, or NO_VECTOR when the table has no such entry (the
    /// driver reads back NO_VECTOR and knows the assignment failed, 4.1.4.3.2).
    private func usableVector(_ value: UInt64) -> UInt16 {
        let vector = UInt16(truncatingIfNeeded: value)
        return Int(vector) < msix.vectorCount ? vector : Self.noVector
    }

    // MARK: Lifecycle

    private func writeStatus(_ written: UInt8) {
        lifecycle.withLock { activation in
            let (transition, registers) = state.withLock { state -> (DeviceStatusTransition, State) in
                let acceptable = state.driverFeatures & ~offeredFeatures == 0 && state.driverFeatures & VirtioFeature.version1 != 0
                let transition = DeviceStatusTransition(current: state.status, written: written, featuresAcceptable: acceptable)
                if case .set(let status, _) = transition {
                    // NEEDS_RESET may have been raised by a handler since: it is kept.
                    state.status = status | (state.status & Self.needsReset)
                }
                return (transition, state)
            }
            switch transition {
            case .reset:
                tearDown(&activation)
                // Status reads 0 only now: a driver that waits for it knows the reset completed.
                state.withLock { $0 = State(queues: device.queueMaxSizes.map { QueueRegisters(size: $0) }) }
            case .set(_, activate: true):
                activate(&activation, registers: registers)
            case .set, .ignore:
                break
            }
        }
    }

    /// Device activation at DRIVER_OK, from the registers as they were when it was accepted.
    private func activate(_ activation: inout Activation, registers: State) {
        let barAddress = space.withLock { $0.barAddress(index: 0) }
        let eventIndex = registers.driverFeatures & VirtioFeature.eventIndex != 0
        var contexts: [QueueContext] = []
        do {
            for (index, queue) in registers.queues.enumerated() where queue.enabled {
                let ring = try Virtqueue(memory: memory, size: queue.size, descriptorTable: queue.descriptorTable,
                                         availableRing: queue.driverArea, usedRing: queue.deviceArea, eventIndex: eventIndex)
                let doorbell = barAddress + Self.notifyOffset + UInt64(index) * UInt64(Self.notifyMultiplier)
                try vm.setIOEventFD(kicks[index], mmioAddress: doorbell, length: 0, remove: false)
                activation.doorbells.append((index, doorbell))
                contexts.append(QueueContext(index: index, queue: ring, kick: kicks[index],
                                             interrupt: VectorInterrupt(transport: self, queue: index),
                                             coalescing: engine.interruptCoalescing))
            }
            activation.handlers = try device.activate(memory: memory, features: registers.driverFeatures, queues: contexts)
            try engine.attach(activation.handlers)
        } catch {
            // The engine took none of the handlers (attach is all or nothing): they and the doorbells go now.
            tearDown(&activation, attached: false)
            markNeedsReset("\(name): activation failed: \(error)")
        }
    }

    /// Stops queue processing: the engine lets go of the handlers (no thread polls them again),
    /// the device reaps what is in flight, then the doorbells go. Returns with nothing left running.
    private func tearDown(_ activation: inout Activation, attached: Bool = true) {
        if attached && !activation.handlers.isEmpty { engine.detach(activation.handlers) }
        if !activation.handlers.isEmpty { device.reset() }
        for doorbell in activation.doorbells {
            try? vm.setIOEventFD(kicks[doorbell.queue], mmioAddress: doorbell.address, length: 0, remove: true)
        }
        activation = Activation()
    }

    /// Stops the device's queue processing at VMM shutdown, as a reset would.
    public func deactivate() {
        lifecycle.withLock { tearDown(&$0) }
    }

    /// Puts the device in DEVICE_NEEDS_RESET and tells the driver through the config vector.
    public func markNeedsReset(_ reason: String) {
        let vector = state.withLock { state -> UInt16 in
            state.status |= Self.needsReset
            state.isr |= 0x2
            return state.configVector
        }
        errorCount.add()
        lastError.withLock { $0 = reason }
        if vector != Self.noVector { msix.raise(vector: Int(vector)) }
    }

    public let errorCount = Counter()
    public let lastError = Lock<String?>(nil)

    /// Raises the vector the driver assigned to `queue`.
    @discardableResult
    func raiseQueueInterrupt(_ queue: Int) -> InterruptDelivery {
        let vector = state.withLock { state -> UInt16 in
            state.isr |= 0x1
            return queue < state.queues.count ? state.queues[queue].vector : Self.noVector
        }
        guard vector != Self.noVector else { return .held }
        return msix.raise(vector: Int(vector))
    }
}

/// A queue's interrupt: whatever MSI-X vector the driver currently assigns to it.
final class VectorInterrupt: QueueInterrupt, Sendable {
    unowned let transport: VirtioPCITransport
    let queue: Int
    init(transport: VirtioPCITransport, queue: Int) {
        self.transport = transport
        self.queue = queue
    }
    func raise() -> InterruptDelivery { transport.raiseQueueInterrupt(queue) }
}

