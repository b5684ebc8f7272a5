/// The common configuration structure of a virtio-pci function (virtio 1.2, 4.1.4.3) as a pure
/// value: feature negotiation, the queue registers and the device status as the driver sees
/// them. What a status write does to the device is the transport's (`DeviceStatusTransition`).
struct VirtioCommonConfiguration {
    static let noVector: UInt16 = 0xFFFF

    struct QueueRegisters {
        var size: UInt16
        var vector: UInt16 = VirtioCommonConfiguration.noVector
        var enabled = false
        var descriptorTable: UInt64 = 0
        var driverArea: UInt64 = 0
        var deviceArea: UInt64 = 0
    }

    let offeredFeatures: UInt64
    let queueMaxSizes: [UInt16]
    /// MSI-X vectors the function has: a vector number past them reads back as NO_VECTOR.
    let vectorCount: Int

    var status: UInt8 = 0
    var deviceFeatureSelect: UInt32 = 0
    var driverFeatureSelect: UInt32 = 0
    var driverFeatures: UInt64 = 0
    var configVector: UInt16 = Self.noVector
    var queueSelect: UInt16 = 0
    var queues: [QueueRegisters]
    var configGeneration: UInt8 = 0
    var isr: UInt8 = 0

    /// The registers after a reset.
    init(offeredFeatures: UInt64, queueMaxSizes: [UInt16], vectorCount: Int) {
        self.offeredFeatures = offeredFeatures
        self.queueMaxSizes = queueMaxSizes
        self.vectorCount = vectorCount
        queues = queueMaxSizes.map { QueueRegisters(size: $0) }
    }

    /// The same function's registers after a reset.
    var afterReset: Self {
        Self(offeredFeatures: offeredFeatures, queueMaxSizes: queueMaxSizes, vectorCount: vectorCount)
    }

    /// Whether the driver's feature selection may be accepted: a subset of the offer, with VERSION_1.
    var featuresAcceptable: Bool {
        driverFeatures & ~offeredFeatures == 0 && driverFeatures & VirtioFeature.version1 != 0
    }

    private var selectedQueue: QueueRegisters? {
        Int(queueSelect) < queues.count ? queues[Int(queueSelect)] : nil
    }

    /// The register at `offset` (zero-extended; an offset inside no register reads 0).
    func read(offset: UInt64) -> UInt64 {
        let queue = selectedQueue
        switch offset {
        case 0x00: return UInt64(deviceFeatureSelect)
        case 0x04:
            return deviceFeatureSelect < 2 ? (offeredFeatures >> (32 * UInt64(deviceFeatureSelect))) & 0xFFFF_FFFF : 0
        case 0x08: return UInt64(driverFeatureSelect)
        case 0x0C:
            return driverFeatureSelect < 2 ? (driverFeatures >> (32 * UInt64(driverFeatureSelect))) & 0xFFFF_FFFF : 0
        case 0x10: return UInt64(configVector)
        case 0x12: return UInt64(queues.count)
        case 0x14: return UInt64(status)
        case 0x15: return UInt64(configGeneration)
        case 0x16: return UInt64(queueSelect)
        case 0x18: return UInt64(queue?.size ?? 0)
        case 0x1A: return UInt64(queue?.vector ?? Self.noVector)
        case 0x1C: return queue?.enabled == true ? 1 : 0
        case 0x1E: return UInt64(queueSelect)  // queue_notify_off: doorbell i at i * multiplier
        case 0x20: return queue?.descriptorTable ?? 0
        case 0x24: return (queue?.descriptorTable ?? 0) >> 32
        case 0x28: return queue?.driverArea ?? 0
        case 0x2C: return (queue?.driverArea ?? 0) >> 32
        case 0x30: return queue?.deviceArea ?? 0
        case 0x34: return (queue?.deviceArea ?? 0) >> 32
        default: return 0
        }
    }

    /// Applies a driver write of `width` bytes. A write to device_status changes nothing here:
    /// the byte written is returned for the transport to decide (`DeviceStatusTransition`).
    @discardableResult
    mutating func write(offset: UInt64, width: Int, value: UInt64) -> UInt8? {
        let selected = Int(queueSelect)
        let hasQueue = selected < queues.count
        // Queue registers may change only before DRIVER_OK (virtio 1.2, 4.1.4.3.2).
        let queueWritable = hasQueue && status & DeviceStatusTransition.driverOK == 0
        switch offset {
        case 0x00: deviceFeatureSelect = UInt32(truncatingIfNeeded: value)
        case 0x08: driverFeatureSelect = UInt32(truncatingIfNeeded: value)
        case 0x0C:
            guard status & DeviceStatusTransition.featuresOK == 0, driverFeatureSelect < 2 else { break }
            let shift = 32 * UInt64(driverFeatureSelect)
            driverFeatures = (driverFeatures & ~(0xFFFF_FFFF << shift)) | ((value & 0xFFFF_FFFF) << shift)
        case 0x10: configVector = usableVector(value)
        case 0x14: return UInt8(truncatingIfNeeded: value)
        case 0x16: queueSelect = UInt16(truncatingIfNeeded: value)
        case 0x18:
            // A driver may shrink a queue, never grow it past the device's maximum.
            if queueWritable, value > 0, value <= UInt64(queueMaxSizes[selected]) {
                queues[selected].size = UInt16(value)
            }
        case 0x1A: if hasQueue { queues[selected].vector = usableVector(value) }
        case 0x1C: if queueWritable, value == 1 { queues[selected].enabled = true }
        case 0x20, 0x24:
            if queueWritable { setAddress(&queues[selected].descriptorTable, offset == 0x24, width, value) }
        case 0x28, 0x2C: if queueWritable { setAddress(&queues[selected].driverArea, offset == 0x2C, width, value) }
        case 0x30, 0x34: if queueWritable { setAddress(&queues[selected].deviceArea, offset == 0x34, width, value) }
        default: break
        }
        return nil
    }

    /// A 64-bit address register written whole or one 32-bit half at a time.
    private func setAddress(_ address: inout UInt64, _ high: Bool, _ width: Int, _ value: UInt64) {
        if width == 8 {
            address = value
        } else if high {
            address = (address & 0xFFFF_FFFF) | (value & 0xFFFF_FFFF) << 32
        } else {
            address = (address & ~0xFFFF_FFFF) | (value & 0xFFFF_FFFF)
        }
    }

    /// A vector number the driver wrote, or NO_VECTOR when the table has no such entry (the
    /// driver reads back NO_VECTOR and knows the assignment failed, 4.1.4.3.2).
    private func usableVector(_ value: UInt64) -> UInt16 {
        let vector = UInt16(truncatingIfNeeded: value)
        return Int(vector) < vectorCount ? vector : Self.noVector
    }
}
