import Hypervisor
import Logging
import Synchronization

/// A modern (non-transitional) virtio-pci function: its configuration space and BAR accesses
/// (where things sit: `VirtioPCILayout`; the common configuration registers:
/// `VirtioCommonConfiguration`), and the device's lifecycle: activation at DRIVER_OK with each
/// queue's doorbell as an ioeventfd, so a guest kick never exits to userspace, and teardown at reset.
public final class VirtioPCITransport: PCIDevice, Sendable {
    typealias Layout = VirtioPCILayout
    static let noVector = VirtioCommonConfiguration.noVector
    static let needsReset = DeviceStatusTransition.needsReset

    /// What a DRIVER_OK started and the next reset tears down. Only touched under `lifecycle`.
    struct Activation {
        /// Queue index and notify address of each ioeventfd registered at DRIVER_OK.
        var doorbells: [(queue: Int, address: UInt64)] = []
        /// What the device returned at DRIVER_OK, running on `engine` until reset.
        var handlers: [QueueHandler] = []
        /// The engine let go of `handlers` for a pause (`suspendQueues`).
        var suspended = false
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
    private let registers: Lock<VirtioCommonConfiguration>
    /// Serializes the device's lifecycle: a status write (activation, reset) runs whole under it,
    /// so a reset on one vCPU and a re-negotiation on another never overlap. Per device, and
    /// never taken by the threads that run handlers, so waiting under it involves only this VM.
    private let lifecycle = Lock(Activation())
    private let msixCapabilityOffset: Int
    /// The device's lifecycle events (activation, reset, DEVICE_NEEDS_RESET), each with its name.
    private let logger: Logger
    /// Events of each kind logged one by one (activations and resets; DEVICE_NEEDS_RESET): a guest
    /// that resets or breaks its device over and over is then only counted, so it cannot flood
    /// the log.
    static let loggedEventsPerKind: UInt64 = 10
    private let lifecycleEvents = Counter()

    /// `logger`: where lifecycle events go (the VM's name in its metadata); the device's name is added.
    public init(
        device: VirtioDevice, name: String, root: PCIRoot, vm: IOEventFDRegistry, router: MSIRouting,
        memory: GuestMemory,
        engine: QueueEngine, logger: Logger = Logger(label: "sidecore.virtio")
    ) throws {
        var logger = logger
        logger[metadataKey: "device"] = "\(name)"
        self.logger = logger
        self.device = device
        self.engine = engine
        self.name = name
        self.vm = vm
        self.memory = memory
        self.offeredFeatures = device.deviceFeatures | VirtioFeature.transport
        let queueCount = device.queueMaxSizes.count
        msix = try MSIXTable(vectorCount: queueCount + 1, router: router)
        kicks = try device.queueMaxSizes.map { _ in try EventFD(nonBlocking: true) }
        registers = Lock(
            VirtioCommonConfiguration(
                offeredFeatures: offeredFeatures, queueMaxSizes: device.queueMaxSizes,
                vectorCount: queueCount + 1))
        var space = PCIConfigurationSpace(
            vendorID: 0x1AF4, deviceID: 0x1040 + device.deviceType, classCode: device.pciClassCode,
            subsystemVendorID: 0x1AF4, subsystemID: 0x40)
        msixCapabilityOffset = Layout.describe(
            in: &space, barAddress: root.allocateBARAddress(sizeInBytes: Layout.barSize),
            queueCount: queueCount)
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
            space.memoryDecodingEnabled ? [(0, space.barAddress(index: 0), Layout.barSize)] : []
        }
    }

    public func barRead(index: Int, offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        data.initializeMemory(as: UInt8.self, repeating: 0)
        switch region(at: offset) {
        case .common(let offset):
            LittleEndian.store(registers.withLock { $0.read(offset: offset) }, into: data)
        case .isr:
            // Reading ISR returns and clears it.
            data[0] = registers.withLock { registers in
                defer { registers.isr = 0 }; return registers.isr
            }
        case .deviceConfiguration(let offset):
            device.readConfiguration(offset: offset, into: data)
        case .msixTable(let offset):
            msix.readTable(offset: offset, into: data)
        case .msixPending(let offset):
            msix.readPendingBits(offset: offset, into: data)
        case .notify, .unused:
            break
        }
    }

    public func barWrite(index: Int, offset: UInt64, data: UnsafeRawBufferPointer) {
        switch region(at: offset) {
        case .common(let offset):
            let value = LittleEndian.value(of: data)
            if let status = registers.withLock({ $0.write(offset: offset, width: data.count, value: value) }) {
                writeStatus(status)
            }
        case .deviceConfiguration(let offset):
            device.writeConfiguration(offset: offset, data: data)
        case .notify(let queue):
            // Only reached before DRIVER_OK registers the ioeventfds: ring the same doorbell.
            kicks[queue].signal()
        case .msixTable(let offset):
            do {
                try msix.writeTable(offset: offset, data: data)
            } catch {
                markNeedsReset("MSI-X route update failed: \(error)")
            }
        case .isr, .msixPending, .unused:
            break
        }
    }

    private func region(at offset: UInt64) -> Layout.Region {
        Layout.region(at: offset, queueCount: kicks.count, vectorCount: msix.vectorCount)
    }

    // MARK: Lifecycle

    private func writeStatus(_ written: UInt8) {
        lifecycle.withLock { activation in
            let (transition, accepted) = registers.withLock { registers in
                let transition = DeviceStatusTransition(
                    current: registers.status, written: written,
                    featuresAcceptable: registers.featuresAcceptable)
                if case .set(let status, _) = transition {
                    // NEEDS_RESET may have been raised by a handler since: it is kept.
                    registers.status = status | (registers.status & Self.needsReset)
                }
                return (transition, registers)
            }
            switch transition {
            case .reset:
                if !activation.handlers.isEmpty { logLifecycle("device reset by the driver") }
                tearDown(&activation)
                // Status reads 0 only now: a driver that waits for it knows the reset completed.
                registers.withLock { $0 = $0.afterReset }
            case .set(_, activate: true):
                activate(&activation, registers: accepted)
            case .set, .ignore:
                break
            }
        }
    }

    /// Device activation at DRIVER_OK, from the registers as they were when it was accepted.
    private func activate(_ activation: inout Activation, registers: VirtioCommonConfiguration) {
        let barAddress = space.withLock { $0.barAddress(index: 0) }
        let eventIndex = registers.driverFeatures & VirtioFeature.eventIndex != 0
        var contexts: [QueueContext] = []
        do {
            for (index, queue) in registers.queues.enumerated() where queue.enabled {
                let ring = try Virtqueue(
                    memory: memory, size: queue.size, descriptorTable: queue.descriptorTable,
                    availableRing: queue.driverArea, usedRing: queue.deviceArea, eventIndex: eventIndex)
                let doorbell = Layout.doorbellAddress(barAddress: barAddress, queue: index)
                try vm.setIOEventFD(kicks[index], mmioAddress: doorbell, length: 0, remove: false)
                activation.doorbells.append((index, doorbell))
                contexts.append(
                    QueueContext(
                        index: index, queue: ring, kick: kicks[index],
                        interrupt: VectorInterrupt(transport: self, queue: index),
                        coalescing: engine.interruptCoalescing))
            }
            activation.handlers = try device.activate(
                memory: memory, features: registers.driverFeatures, queues: contexts)
            try engine.attach(activation.handlers)
            logLifecycle(
                "device activated",
                ["queues": "\(contexts.count)", "features": "0x\(String(registers.driverFeatures, radix: 16))"])
        } catch {
            // The engine took none of the handlers (attach is all or nothing): they and the doorbells go now.
            tearDown(&activation, attached: false)
            markNeedsReset("\(name): activation failed: \(error)")
        }
    }

    /// Stops queue processing: the engine lets go of the handlers (no thread polls them again),
    /// the device reaps what is in flight, then the doorbells go. Returns with nothing left running.
    private func tearDown(_ activation: inout Activation, attached: Bool = true) {
        if attached && !activation.suspended && !activation.handlers.isEmpty { engine.detach(activation.handlers) }
        if !activation.handlers.isEmpty { device.reset() }
        for doorbell in activation.doorbells {
            try? vm.setIOEventFD(kicks[doorbell.queue], mmioAddress: doorbell.address, length: 0, remove: true)
        }
        activation = Activation()
    }

    /// Stops serving the queues for a pause, without a reset: the engine lets go of the handlers
    /// after their current call; requests in flight stay in flight and rings keep what they hold.
    public func suspendQueues() {
        lifecycle.withLock { activation in
            guard !activation.suspended, !activation.handlers.isEmpty else { return }
            engine.detach(activation.handlers)
            activation.suspended = true
        }
    }

    /// Serves the queues again after `suspendQueues`, with their rings and requests as they were.
    public func resumeQueues() {
        lifecycle.withLock { activation in
            guard activation.suspended else { return }
            activation.suspended = false
            do {
                try engine.attach(activation.handlers)
            } catch {
                tearDown(&activation, attached: false)
                markNeedsReset("\(name): queues could not be resumed: \(error)")
            }
        }
    }

    /// Stops the device's queue processing at VMM shutdown, as a reset would.
    public func deactivate() {
        lifecycle.withLock { tearDown(&$0) }
    }

    /// Puts the device in DEVICE_NEEDS_RESET and tells the driver through the config vector.
    public func markNeedsReset(_ reason: String) {
        let vector = registers.withLock { registers -> UInt16 in
            registers.status |= Self.needsReset
            registers.isr |= 0x2
            return registers.configVector
        }
        errorCount.add()
        lastError.withLock { $0 = reason }
        let count = errorCount.count
        if count <= Self.loggedEventsPerKind {
            var fields: Logger.Metadata = ["reason": "\(reason)"]
            if count == Self.loggedEventsPerKind { fields["next"] = "counted only (device_errors)" }
            logger.warning("device needs reset", metadata: fields)
        }
        if vector != Self.noVector { msix.raise(vector: Int(vector)) }
    }

    /// An activation or reset, at info level: the first `loggedEventsPerKind` of them.
    private func logLifecycle(_ message: Logger.Message, _ fields: Logger.Metadata = [:]) {
        lifecycleEvents.add()
        let count = lifecycleEvents.count
        guard count <= Self.loggedEventsPerKind else { return }
        var fields = fields
        if count == Self.loggedEventsPerKind { fields["next"] = "not logged" }
        logger.info(message, metadata: fields)
    }

    public let errorCount = Counter()
    public let lastError = Lock<String?>(nil)

    /// Raises the vector the driver assigned to `queue`.
    @discardableResult
    func raiseQueueInterrupt(_ queue: Int) -> InterruptDelivery {
        let vector = registers.withLock { registers -> UInt16 in
            registers.isr |= 0x1
            return queue < registers.queues.count ? registers.queues[queue].vector : Self.noVector
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
