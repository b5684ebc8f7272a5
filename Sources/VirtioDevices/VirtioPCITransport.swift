import Hypervisor
import Synchronization

/// A modern (non-transitional) virtio-pci function: the standard vendor capabilities (common,
/// notify, ISR, device config) and MSI-X, all in one 64-bit memory BAR; status and feature
/// negotiation; queue setup; and activation of the device at DRIVER_OK with each queue's
/// doorbell as an ioeventfd, so a guest kick never exits to userspace.
public final class VirtioPCITransport: PCIDevice, @unchecked Sendable {
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

    // Device status bits.
    static let acknowledge: UInt8 = 1
    static let driver: UInt8 = 2
    static let driverOK: UInt8 = 4
    static let featuresOK: UInt8 = 8
    static let needsReset: UInt8 = 64
    static let failed: UInt8 = 128

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
        var active = false
        /// Queue index and notify address of each ioeventfd registered at DRIVER_OK.
        var registeredDoorbells: [(queue: Int, address: UInt64)] = []
        /// What the device returned at DRIVER_OK, running on `engine` until reset.
        var handlers: [QueueHandler] = []
    }

    public let device: VirtioDevice
    public let name: String
    let offeredFeatures: UInt64
    private let vm: VirtualMachine
    private let memory: GuestMemory
    private let engine: QueueEngine
    private let msix: MSIXTable
    private let kicks: [EventFD]
    private let space: Mutex<PCIConfigurationSpace>
    private let state: Mutex<State>
    private let msixCapabilityOffset: Int

    public init(device: VirtioDevice, name: String, root: PCIRoot, vm: VirtualMachine, router: InterruptRouter, memory: GuestMemory,
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
        state = Mutex(State(queues: device.queueMaxSizes.map { QueueRegisters(size: $0) }))

        var space = PCIConfigurationSpace(vendorID: 0x1AF4, deviceID: 0x1040 + device.deviceType, classCode: device.pciClassCode,
                                          subsystemVendorID: 0x1AF4, subsystemID: 0x40)
        space.addMemoryBAR64(index: 0, address: root.allocateBARAddress(sizeInBytes: Self.barSize), sizeInBytes: Self.barSize)
        func virtioCapability(type: UInt8, offset: UInt64, length: UInt32, extra: [UInt8] = []) -> [UInt8] {
            // cap_len, cfg_type, bar, id, padding[2], offset, length (+ notify multiplier)
            [UInt8(16 + extra.count), type, 0, 0, 0, 0] + le(UInt32(offset)) + le(length) + extra
        }
        space.addCapability(id: 0x09, body: virtioCapability(type: 1, offset: Self.commonOffset, length: 0x40))
        space.addCapability(id: 0x09, body: virtioCapability(type: 2, offset: Self.notifyOffset, length: UInt32(queueCount) * Self.notifyMultiplier,
                                                             extra: le(Self.notifyMultiplier)))
        space.addCapability(id: 0x09, body: virtioCapability(type: 3, offset: Self.isrOffset, length: 1))
        space.addCapability(id: 0x09, body: virtioCapability(type: 4, offset: Self.deviceConfigOffset, length: 0x100))
        // MSI-X: table size - 1, then table and PBA offsets in BAR 0; enable and function mask are writable.
        msixCapabilityOffset = space.addCapability(
            id: 0x11, body: le(UInt16(queueCount)) + le(UInt32(Self.msixTableOffset)) + le(UInt32(Self.msixPendingOffset)),
            writableMask: [0x00, 0xC0])
        self.space = Mutex(space)
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
            for index in 0..<data.count { data[index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
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
        var value: UInt64 = 0
        for index in 0..<min(data.count, 8) { value |= UInt64(data[index]) << (8 * UInt64(index)) }
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
        var activate = false
        var reset = false
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
            case 0x10: state.configVector = UInt16(truncatingIfNeeded: value)
            case 0x14:
                let status = UInt8(truncatingIfNeeded: value)
                if status == 0 {
                    reset = state.active
                    // The running handlers and doorbells stay recorded for deactivate() to tear down.
                    var fresh = State(queues: device.queueMaxSizes.map { QueueRegisters(size: $0) })
                    fresh.handlers = state.handlers
                    fresh.registeredDoorbells = state.registeredDoorbells
                    state = fresh
                    return
                }
                var accepted = status
                if status & Self.featuresOK != 0 && state.status & Self.featuresOK == 0 {
                    // Features the device never offered, or a driver without VERSION_1: refuse FEATURES_OK.
                    if state.driverFeatures & ~offeredFeatures != 0 || state.driverFeatures & VirtioFeature.version1 == 0 {
                        accepted &= ~Self.featuresOK
                    }
                }
                if accepted & Self.driverOK != 0 && state.status & Self.driverOK == 0 && accepted & Self.featuresOK != 0 {
                    activate = true
                }
                state.status = accepted | (state.status & Self.needsReset)
            case 0x16: state.queueSelect = UInt16(truncatingIfNeeded: value)
            case 0x18:
                // A driver may shrink a queue, never grow it past the device's maximum.
                if queueWritable, value > 0, value <= UInt64(device.queueMaxSizes[selected]) {
                    state.queues[selected].size = UInt16(value)
                }
            case 0x1A: if hasQueue { state.queues[selected].vector = UInt16(truncatingIfNeeded: value) }
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
        if reset { deactivate() }
        if activate { activateDevice() }
    }

    // MARK: Activation

    private func activateDevice() {
        let snapshot = state.withLock { $0 }
        let barAddress = space.withLock { $0.barAddress(index: 0) }
        let eventIndex = snapshot.driverFeatures & VirtioFeature.eventIndex != 0
        var contexts: [QueueContext] = []
        var doorbells: [(queue: Int, address: UInt64)] = []
        do {
            for (index, registers) in snapshot.queues.enumerated() where registers.enabled {
                let queue = try Virtqueue(memory: memory, size: registers.size, descriptorTable: registers.descriptorTable,
                                          availableRing: registers.driverArea, usedRing: registers.deviceArea, eventIndex: eventIndex)
                let doorbell = barAddress + Self.notifyOffset + UInt64(index) * UInt64(Self.notifyMultiplier)
                try vm.setIOEventFD(kicks[index], mmioAddress: doorbell, length: 0)
                doorbells.append((index, doorbell))
                contexts.append(QueueContext(index: index, queue: queue, kick: kicks[index],
                                             interrupt: VectorInterrupt(transport: self, queue: index),
                                             coalescing: engine.interruptCoalescing))
            }
            let handlers = try device.activate(memory: memory, features: snapshot.driverFeatures, queues: contexts)
            state.withLock {
                $0.active = true
                $0.registeredDoorbells = doorbells
                $0.handlers = handlers
            }
            try engine.attach(handlers)
        } catch {
            // What got recorded in the state is torn down by deactivate(); doorbells before that here.
            let recorded = state.withLock { !$0.registeredDoorbells.isEmpty }
            if recorded { deactivate() } else { removeDoorbells(doorbells) }
            markNeedsReset("\(name): activation failed: \(error)")
        }
    }

    /// Stops the device's queue processing: the engine lets go of the handlers, then the device
    /// finishes what is in flight. Also called at VMM shutdown.
    public func deactivate() {
        let (handlers, doorbells) = state.withLock { state in
            defer {
                state.handlers = []
                state.registeredDoorbells = []
            }
            return (state.handlers, state.registeredDoorbells)
        }
        engine.detach(handlers)
        device.reset()
        removeDoorbells(doorbells)
    }

    private func removeDoorbells(_ doorbells: [(queue: Int, address: UInt64)]) {
        for doorbell in doorbells {
            try? vm.setIOEventFD(kicks[doorbell.queue], mmioAddress: doorbell.address, length: 0, remove: true)
        }
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
    public let lastError = Mutex<String?>(nil)

    /// Raises the vector the driver assigned to `queue`; returns whether it went through a
    /// redirected route.
    @discardableResult
    func raiseQueueInterrupt(_ queue: Int) -> Bool {
        let vector = state.withLock { state -> UInt16 in
            state.isr |= 0x1
            return queue < state.queues.count ? state.queues[queue].vector : Self.noVector
        }
        guard vector != Self.noVector else { return false }
        return msix.raise(vector: Int(vector))
    }

    /// Interrupts sent through MSI-X for `queue`'s current vector (for statistics).
    public func interruptsRaised(vector: Int) -> UInt64 {
        vector < msix.vectorCount ? msix.raised[vector].count : 0
    }
}

/// A queue's interrupt: whatever MSI-X vector the driver currently assigns to it.
final class VectorInterrupt: QueueInterrupt, @unchecked Sendable {
    unowned let transport: VirtioPCITransport
    let queue: Int
    init(transport: VirtioPCITransport, queue: Int) {
        self.transport = transport
        self.queue = queue
    }
    func raise() -> Bool { transport.raiseQueueInterrupt(queue) }
}

func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { littleEndianBytes(value) }
