import Dispatch
import Hypervisor
import Synchronization
@testable import VirtioDevices
import XCTest

/// A device that records activation, for transport tests.
final class FakeVirtioDevice: VirtioDevice, @unchecked Sendable {
    // @unchecked: the transport sets `transportNeedsReset` once, before any other thread runs.
    let deviceType: UInt16 = 2
    let pciClassCode: UInt32 = 0x01_80_00
    let deviceFeatures: UInt64 = 1 << 9
    let queueMaxSizes: [UInt16] = [16, 16]
    let activations = Lock<[(features: UInt64, queues: [Int])]>([])
    let resets = Lock(0)
    var transportNeedsReset: ((String) -> Void)?
    /// Where reset() records itself, to check it comes after the engine let go of the handlers.
    var engine: RecordingEngine?

    func readConfiguration(offset: Int, into data: UnsafeMutableRawBufferPointer) {
        for index in 0..<data.count { data[index] = UInt8(truncatingIfNeeded: offset + index) }
    }
    func writeConfiguration(offset: Int, data: UnsafeRawBufferPointer) {}
    func activate(memory: GuestMemory, features: UInt64, queues: [QueueContext]) throws -> [QueueHandler] {
        activations.withLock { $0.append((features, queues.map(\.index))) }
        return queues.map { FakeQueueHandler(name: "q\($0.index)") }
    }
    func reset() {
        resets.withLock { $0 += 1 }
        engine?.events.withLock { $0.append("device reset") }
    }
}

/// The virtio-pci transport's registers as Linux's virtio_pci_modern drives them, on a real VM
/// (MSI-X routes and ioeventfds need KVM).
final class VirtioPCITransportTests: XCTestCase {
    var vm: VirtualMachine!
    var memory: GuestMemory!
    var device: FakeVirtioDevice!
    var transport: VirtioPCITransport!
    var engine: RecordingEngine!

    override func setUpWithError() throws {
        vm = try KVM().createVM()
        try vm.createIRQChip()
        memory = try GuestMemory(ranges: [(0, 1 << 20)])
        try vm.map(memory)
        device = FakeVirtioDevice()
        engine = RecordingEngine()
        device.engine = engine
        transport = try VirtioPCITransport(
            device: device, name: "test", root: PCIRoot(), vm: vm,
            router: InterruptRouter(vm: vm), memory: memory, engine: engine)
        transport.configurationWrite(offset: 0x04, width: 2, value: 0x06)  // memory decoding, bus master
    }

    func common(_ offset: UInt64, width: Int = 4) -> UInt64 {
        var bytes = [UInt8](repeating: 0, count: width)
        bytes.withUnsafeMutableBytes { transport.barRead(index: 0, offset: offset, into: $0) }
        return bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }

    func setCommon(_ offset: UInt64, _ value: UInt64, width: Int = 4) {
        let bytes = (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
        bytes.withUnsafeBytes { transport.barWrite(index: 0, offset: offset, data: $0) }
    }

    func testConfigurationSpaceIdentifiesAModernVirtioDeviceWithItsCapabilities() {
        XCTAssertEqual(transport.configurationRead(offset: 0, width: 4), 0x1042_1AF4)
        XCTAssertEqual(transport.configurationRead(offset: 0x08, width: 4) >> 8, 0x01_80_00, "class code")
        XCTAssertNotEqual(transport.configurationRead(offset: 0x06, width: 2) & 0x10, 0, "capability list")
        var pointer = Int(transport.configurationRead(offset: 0x34, width: 1))
        var virtioTypes: [UInt32] = []
        var msixTableSize: UInt32?
        while pointer != 0 {
            let id = transport.configurationRead(offset: pointer, width: 1)
            if id == 0x09 { virtioTypes.append(transport.configurationRead(offset: pointer + 3, width: 1)) }
            if id == 0x11 { msixTableSize = (transport.configurationRead(offset: pointer + 2, width: 2) & 0x7FF) + 1 }
            pointer = Int(transport.configurationRead(offset: pointer + 1, width: 1))
        }
        XCTAssertEqual(virtioTypes, [1, 2, 3, 4], "common, notify, ISR, device config")
        XCTAssertEqual(msixTableSize, 3, "one vector per queue plus config")
    }

    func testBARSizingReportsTheSize() {
        let original = transport.configurationRead(offset: 0x10, width: 4)
        transport.configurationWrite(offset: 0x10, width: 4, value: 0xFFFF_FFFF)
        XCTAssertEqual(transport.configurationRead(offset: 0x10, width: 4), 0xFFFF_000C, "64 KiB, 64-bit prefetchable")
        transport.configurationWrite(offset: 0x10, width: 4, value: original)
        XCTAssertEqual(transport.configurationRead(offset: 0x10, width: 4), original)
        XCTAssertEqual(transport.memoryBARs().first?.address, UInt64(original & ~0xF))
    }

    func negotiate(_ features: UInt64) -> UInt8 {
        setCommon(0x14, 1 | 2, width: 1)
        setCommon(0x08, 0)
        setCommon(0x0C, features & 0xFFFF_FFFF)
        setCommon(0x08, 1)
        setCommon(0x0C, features >> 32)
        setCommon(0x14, 1 | 2 | 8, width: 1)
        return UInt8(common(0x14, width: 1))
    }

    func testFeaturesNeverOfferedAreRefused() {
        setCommon(0x00, 1)
        XCTAssertEqual(common(0x04), 1 | (1 << 0), "VERSION_1 offered in the high word")
        XCTAssertEqual(negotiate(VirtioFeature.version1 | (1 << 20)) & 8, 0, "bit 20 was never offered")
        setCommon(0x14, 0, width: 1)
        XCTAssertEqual(negotiate(1 << 9) & 8, 0, "a driver without VERSION_1 is refused")
        setCommon(0x14, 0, width: 1)
        XCTAssertEqual(negotiate(VirtioFeature.version1 | (1 << 9)) & 8, 8)
    }

    /// Negotiates, sets up queue 1 only, and sets DRIVER_OK.
    func activateQueueOne() {
        XCTAssertEqual(negotiate(VirtioFeature.version1 | VirtioFeature.eventIndex) & 8, 8)
        setCommon(0x16, 1, width: 2)  // queue 1
        XCTAssertEqual(common(0x18, width: 2), 16)
        setUpQueueOneAndStart()
    }

    /// The rest of `activateQueueOne`, with nothing asserted (a racing reset may undo any step).
    func setUpQueueOneAndStart() {
        _ = negotiate(VirtioFeature.version1 | VirtioFeature.eventIndex)
        setCommon(0x16, 1, width: 2)
        setCommon(0x18, 8, width: 2)
        setCommon(0x20, 0x1000, width: 8)
        setCommon(0x28, 0x2000, width: 8)
        setCommon(0x30, 0x3000, width: 8)
        setCommon(0x1C, 1, width: 2)
        setCommon(0x14, 1 | 2 | 8 | 4, width: 1)
    }

    func testDriverOKActivatesEnabledQueuesAndResetDeactivates() {
        activateQueueOne()
        XCTAssertEqual(device.activations.withLock { $0.map(\.queues) }, [[1]])
        XCTAssertEqual(
            device.activations.withLock { $0.first?.features }, VirtioFeature.version1 | VirtioFeature.eventIndex)
        setCommon(0x18, 4, width: 2)
        XCTAssertEqual(common(0x18, width: 2), 8, "queue registers are frozen after DRIVER_OK")
        setCommon(0x14, 0, width: 1)
        XCTAssertEqual(common(0x14, width: 1), 0)
        XCTAssertEqual(device.resets.withLock { $0 }, 1)
        XCTAssertEqual(
            engine.events.withLock { $0 }, ["attach [\"q1\"]", "detach [\"q1\"]", "device reset"],
            "the engine lets go of the handlers before the device resets")
    }

    func testDriverCanResetAndActivateAgain() {
        activateQueueOne()
        setCommon(0x14, 0, width: 1)
        // The doorbell's ioeventfd was removed at reset: registering it again must not fail.
        activateQueueOne()
        XCTAssertEqual(
            common(0x14, width: 1) & 64, 0, "no DEVICE_NEEDS_RESET: \(transport.lastError.withLock { $0 } ?? "")")
        XCTAssertEqual(device.activations.withLock { $0.count }, 2)
    }

    func testQueueOutsideGuestMemoryNeedsReset() {
        _ = negotiate(VirtioFeature.version1)
        setCommon(0x16, 0, width: 2)
        setCommon(0x20, 0xFFFF_0000, width: 8)
        setCommon(0x1C, 1, width: 2)
        setCommon(0x14, 1 | 2 | 8 | 4, width: 1)
        XCTAssertNotEqual(common(0x14, width: 1) & 64, 0, "DEVICE_NEEDS_RESET")
        XCTAssertTrue(device.activations.withLock { $0.isEmpty })
    }

    /// Signals on vector `vector`'s irqfd since the last call: what KVM would have delivered.
    func signals(vector: Int) -> UInt64 {
        let eventfd = transport.msix.eventfds[vector]
        var ready = pollfd(fd: eventfd.fd, events: Int16(POLLIN), revents: 0)
        guard poll(&ready, 1, 0) == 1 else { return 0 }
        return eventfd.wait()
    }

    func testMaskedMSIXVectorIsPendingUntilUnmasked() throws {
        // KVM's irqfds would consume the signals this test counts.
        transport = try VirtioPCITransport(
            device: device, name: "test", root: PCIRoot(), vm: vm,
            router: UnboundMSIRouter(), memory: memory, engine: engine)
        transport.configurationWrite(offset: 0x04, width: 2, value: 0x06)
        var pointer = Int(transport.configurationRead(offset: 0x34, width: 1))
        while transport.configurationRead(offset: pointer, width: 1) != 0x11 {
            pointer = Int(transport.configurationRead(offset: pointer + 1, width: 1))
        }
        transport.configurationWrite(offset: pointer + 2, width: 2, value: 0x8000)  // enable MSI-X
        let entry = VirtioPCILayout.msixTableOffset
        setCommon(entry, 0xFEE0_0000)
        setCommon(entry + 8, 0x41)
        setCommon(0x16, 0, width: 2)
        setCommon(0x1A, 0, width: 2)  // queue 0 -> vector 0
        XCTAssertEqual(common(entry + 12), 1, "vectors start masked")
        transport.raiseQueueInterrupt(0)
        XCTAssertEqual(common(VirtioPCILayout.msixPending.lowerBound) & 1, 1, "pending bit set while masked")
        XCTAssertEqual(signals(vector: 0), 0)
        setCommon(entry + 12, 0)  // unmask
        XCTAssertEqual(common(VirtioPCILayout.msixPending.lowerBound) & 1, 0)
        XCTAssertEqual(signals(vector: 0), 1, "delivered on unmask")
        XCTAssertEqual(transport.raiseQueueInterrupt(0), .programmedDestination)
        XCTAssertEqual(signals(vector: 0), 1)
        transport.configurationWrite(offset: pointer + 2, width: 2, value: 0xC000)  // function mask
        XCTAssertEqual(transport.raiseQueueInterrupt(0), .held)
        XCTAssertEqual(signals(vector: 0), 0, "function mask holds it back")
        transport.configurationWrite(offset: pointer + 2, width: 2, value: 0x8000)
        XCTAssertEqual(signals(vector: 0), 1, "delivered when the function mask lifts")
    }

    func testDeviceReportingABrokenRingSetsNeedsReset() {
        _ = negotiate(VirtioFeature.version1)
        XCTAssertEqual(common(0x14, width: 1) & 64, 0)
        device.transportNeedsReset?("available index jumped")
        XCTAssertNotEqual(common(0x14, width: 1) & 64, 0, "DEVICE_NEEDS_RESET")
        XCTAssertEqual(transport.lastError.withLock { $0 }, "available index jumped")
    }

    func testDeviceConfigurationIsForwarded() {
        XCTAssertEqual(common(VirtioPCILayout.deviceConfiguration.lowerBound + 4, width: 4), 0x0706_0504)
    }

    func testDriverOKIsNotReenteredWithoutAResetEvenWithTheBARMoved() {
        activateQueueOne()
        setCommon(0x14, 1 | 2 | 8, width: 1)  // DRIVER_OK cleared without a reset: ignored
        XCTAssertEqual(common(0x14, width: 1), 1 | 2 | 8 | 4)
        // Move BAR 0 so a second activation's doorbell would not collide with the first one's.
        let original = transport.configurationRead(offset: 0x10, width: 4)
        transport.configurationWrite(offset: 0x10, width: 4, value: original + 0x10000)
        setCommon(0x14, 1 | 2 | 8 | 4, width: 1)
        XCTAssertEqual(device.activations.withLock { $0.count }, 1, "activated once per reset")
        XCTAssertEqual(engine.events.withLock { $0 }, ["attach [\"q1\"]"])
        setCommon(0x14, 0, width: 1)
        XCTAssertEqual(engine.events.withLock { $0 }, ["attach [\"q1\"]", "detach [\"q1\"]", "device reset"])
    }

    func testDriverOKWithoutFeaturesOKDoesNotActivate() {
        setCommon(0x14, 1 | 2, width: 1)
        setCommon(0x16, 1, width: 2)
        setCommon(0x1C, 1, width: 2)
        setCommon(0x14, 1 | 2 | 4, width: 1)
        XCTAssertEqual(common(0x14, width: 1), 1 | 2, "DRIVER_OK skipped FEATURES_OK: ignored")
        XCTAssertTrue(device.activations.withLock { $0.isEmpty })
    }

    func testNeedsResetBlocksActivationUntilReset() {
        _ = negotiate(VirtioFeature.version1)
        device.transportNeedsReset?("broken")
        setCommon(0x14, 1 | 2 | 8 | 4 | 64, width: 1)
        XCTAssertTrue(device.activations.withLock { $0.isEmpty }, "a device that needs a reset does not go live")
        setCommon(0x14, 0, width: 1)
        XCTAssertEqual(common(0x14, width: 1), 0, "reset clears DEVICE_NEEDS_RESET")
        activateQueueOne()
        XCTAssertEqual(device.activations.withLock { $0.count }, 1)
    }

    func testVectorsTheTableDoesNotHaveReadBackAsNoVector() {
        setCommon(0x16, 0, width: 2)
        setCommon(0x1A, 2, width: 2)
        XCTAssertEqual(common(0x1A, width: 2), 2, "vector 2 exists (two queues and config)")
        setCommon(0x1A, 3, width: 2)
        XCTAssertEqual(common(0x1A, width: 2), 0xFFFF)
        setCommon(0x10, 0x7FF, width: 2)
        XCTAssertEqual(common(0x10, width: 2), 0xFFFF)
    }

    func testResetRacingRenegotiationOnAnotherVCPUNeverOverlapsActivations() throws {
        let vcpus = 2
        let rounds = 200
        // The test's helpers only reach the transport, which is what the two threads share.
        nonisolated(unsafe) let test = self
        DispatchQueue.concurrentPerform(iterations: vcpus) { vcpu in
            for _ in 0..<rounds {
                if vcpu == 0 { test.setCommon(0x14, 0, width: 1) } else { test.setUpQueueOneAndStart() }
            }
        }
        setCommon(0x14, 0, width: 1)
        let events = engine.events.withLock { $0 }
        // Every attach is followed by its detach and the device reset before the next attach.
        var expecting = "attach"
        for event in events {
            if event.hasPrefix("attach") {
                XCTAssertEqual(expecting, "attach", "\(events)")
                expecting = "detach"
            } else if event.hasPrefix("detach") {
                XCTAssertEqual(expecting, "detach")
                expecting = "device reset"
            } else {
                XCTAssertEqual(expecting, "device reset")
                expecting = "attach"
            }
        }
        XCTAssertEqual(expecting, "attach", "the last activation was torn down")
        XCTAssertEqual(device.activations.withLock { $0.count }, device.resets.withLock { $0 })
    }
}
