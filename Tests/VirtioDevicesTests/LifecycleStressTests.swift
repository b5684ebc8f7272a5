import Dispatch
import Foundation
import Glibc
import Hypervisor
import CKVM
import Synchronization
@testable import VirtioDevices
import XCTest

/// Two threads playing vCPUs and one playing the guest's driver against a real virtio-blk device
/// on a real engine, with a fourth sending the kick signal to both vCPU threads all along:
/// vCPU 0 negotiates, activates, floods the queue and resets with reads in flight, over and
/// over; vCPU 1 rewrites MSI-X entries and vectors, re-enters DRIVER_OK and writes stray status
/// values. Every read published while the device is active completes with the right data; none
/// completes after its reset; nothing deadlocks. `make tsan` runs it under ThreadSanitizer
/// (STRESS_ITERATIONS sets the rounds, default 300).
final class LifecycleStressTests: XCTestCase {
    static let queueSize: UInt16 = 64
    static let requestsPerRound = 16

    var path: String!
    var vm: VirtualMachine!
    var driver: FakeDriver!
    var transport: VirtioPCITransport!

    override func setUpWithError() throws {
        VCPUKickSignal.install()
        path = NSTemporaryDirectory() + "sidecore-stress-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).img"
        // Block i (4 KiB) starts with its index.
        var contents = Data(count: 1 << 20)
        for block in 0..<256 {
            contents.replaceSubrange(
                (block * 4096)..<(block * 4096 + 8), with: withUnsafeBytes(of: UInt64(block).littleEndian, Array.init))
        }
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: contents))
        vm = try KVM().createVM()
        try vm.createIRQChip()
        driver = try FakeDriver(size: Self.queueSize, memoryInBytes: 8 << 20)
        try vm.map(driver.memory)
    }

    override func tearDown() {
        transport = nil
        if let path { unlink(path) }
    }

    var iterations: Int { Int(ProcessInfo.processInfo.environment["STRESS_ITERATIONS"] ?? "") ?? 300 }

    func testSideCoreEngine() throws {
        var configuration = SideCoreConfiguration(mode: .poll, count: 1, pollMaxNanoseconds: 0)
        configuration.placement = .unpinned
        let engine = try SideCoreEngine(configuration: configuration)
        defer { engine.stop() }
        try stress(engine: engine)
    }

    func testNotifyEngine() throws {
        try stress(engine: NotifyEngine())
    }

    func stress(engine: QueueEngine) throws {
        let device = try BlockDevice(
            configuration: BlockDeviceConfiguration(path: path, id: "stress"), name: "blk-stress")
        transport = try VirtioPCITransport(
            device: device, name: "blk-stress", root: PCIRoot(), vm: vm,
            router: InterruptRouter(vm: vm), memory: driver.memory, engine: engine)
        transport.configurationWrite(offset: 0x04, width: 2, value: 0x06)
        let stop = Atomic<Bool>(false)
        let failures = Lock<[String]>([])
        let rounds = Atomic<Int>(0)
        let iterations = iterations
        let transport = transport!
        let driver = driver!

        let vcpu0 = try HostThread(name: "stress-vcpu0") {
            var bus = RegisterAccess(transport: transport)
            for round in 0..<iterations {
                if let failure = Self.round(round, bus: &bus, driver: driver) {
                    failures.withLock { $0.append("round \(round): \(failure)") }
                    break
                }
                rounds.add(1, ordering: .relaxed)
            }
            stop.store(true, ordering: .releasing)
        }
        let vcpu1 = try HostThread(name: "stress-vcpu1") {
            var bus = RegisterAccess(transport: transport)
            var step: UInt64 = 0
            while !stop.load(ordering: .acquiring) {
                step &+= 1
                switch step % 6 {
                case 0:
                    // MSI-X entry 0 and 1: a message, then masked and unmasked.
                    let entry = VirtioPCILayout.msixTableOffset + 16 * (step / 6 % 2)
                    bus.write(entry, 0xFEE0_0000 | UInt64(step % 2) << 12)
                    bus.write(entry + 8, 0x40 + step % 16)
                    bus.write(entry + 12, step % 3 == 0 ? 1 : 0)
                case 1:
                    bus.write(0x1A, step % 4, width: 2)  // the selected queue's vector, sometimes out of range
                case 2:
                    _ = bus.read(0x14, width: 1)
                    _ = bus.read(VirtioPCILayout.msixPending.lowerBound, width: 8)
                case 3:
                    // DRIVER_OK cleared without a reset: ignored while active (in other states it
                    // may take a negotiation one step on, which vCPU 0 then completes).
                    bus.write(0x14, 1 | 2 | 8, width: 1)
                case 4:
                    bus.write(0x14, UInt64(0x10 | (step & 0x20)), width: 1)  // reserved bits only: ignored
                default:
                    _ = bus.read(VirtioPCILayout.deviceConfiguration.lowerBound, width: 8)
                    _ = transport.configurationRead(offset: 0x04, width: 4)
                }
            }
        }
        // Kicks both vCPU threads as hvctl does to stop them, so their waits see EINTR.
        let signaller = try HostThread(name: "stress-signal") {
            while !stop.load(ordering: .acquiring) {
                vcpu0.kick()
                vcpu1.kick()
                usleep(50)
            }
        }
        vcpu0.join()
        vcpu1.join()
        signaller.join()
        transport.deactivate()
        XCTAssertEqual(failures.withLock { $0 }, [])
        XCTAssertEqual(rounds.load(ordering: .relaxed), iterations, "every round ran")
        XCTAssertEqual(
            transport.errorCount.count, 0,
            "the device never needed a reset: \(transport.lastError.withLock { $0 } ?? "")")
    }

    /// One round of vCPU 0: activate, read and verify a round of blocks, then reset with another
    /// round in flight and check that none of it comes back afterwards. Returns what went wrong.
    static func round(_ round: Int, bus: inout RegisterAccess, driver: FakeDriver) -> String? {
        reset(&bus)
        bus.write(0x14, 1, width: 1)
        bus.write(0x14, 1 | 2, width: 1)
        bus.write(0x08, 1)
        bus.write(0x0C, 1)  // VERSION_1
        bus.write(0x08, 0)
        bus.write(0x0C, 0)
        bus.write(0x14, 1 | 2 | 8, width: 1)
        guard bus.read(0x14, width: 1) & 8 != 0 else { return "FEATURES_OK refused" }
        bus.write(0x16, 0, width: 2)
        bus.write(0x18, UInt64(queueSize), width: 2)
        bus.write(0x20, driver.descriptorTable, width: 8)
        bus.write(0x28, driver.availableRing, width: 8)
        bus.write(0x30, driver.usedRing, width: 8)
        bus.write(0x1C, 1, width: 2)
        driver.restart()
        bus.write(0x14, 1 | 2 | 8 | 4, width: 1)
        let status = bus.read(0x14, width: 1)
        guard status & 4 != 0, status & 64 == 0 else { return "not active after DRIVER_OK (status \(status))" }

        // A round that must complete, every block verified.
        for request in 0..<requestsPerRound {
            driver.publishRead(slot: request, block: UInt64((round + request) % 256))
        }
        bus.write(VirtioPCILayout.notifyOffset, 0, width: 2)  // the doorbell of queue 0
        let deadline = MonotonicClock.now() + 5_000_000_000
        while driver.usedIndex < UInt16(requestsPerRound) {
            guard MonotonicClock.now() < deadline else {
                return "\(driver.usedIndex) of \(requestsPerRound) reads completed in 5 s"
            }
        }
        for request in 0..<requestsPerRound {
            guard let result = driver.readResult(slot: request), result.status == 0,
                result.block == UInt64((round + request) % 256)
            else {
                return "read \(request) came back wrong: \(String(describing: driver.readResult(slot: request)))"
            }
        }
        // Another round, reset at once: whatever the device did not finish must never come back.
        for request in 0..<requestsPerRound {
            driver.publishRead(slot: requestsPerRound + request, block: UInt64(request))
        }
        bus.write(VirtioPCILayout.notifyOffset, 0, width: 2)
        reset(&bus)
        let afterReset = driver.usedIndex
        let settle = MonotonicClock.now() + 1_000_000
        while MonotonicClock.now() < settle {}
        guard driver.usedIndex == afterReset else {
            return "used index moved from \(afterReset) to \(driver.usedIndex) after the reset"
        }
        return nil
    }

    /// Writes status 0 until it reads 0: a reset completes within the write, but vCPU 1 may have
    /// started a negotiation again since.
    static func reset(_ bus: inout RegisterAccess) {
        repeat { bus.write(0x14, 0, width: 1) } while bus.read(0x14, width: 1) != 0
    }

    /// Register reads and writes through BAR 0, as a vCPU's MMIO exits make them.
    struct RegisterAccess {
        let transport: VirtioPCITransport
        var scratch = [UInt8](repeating: 0, count: 8)

        mutating func write(_ offset: UInt64, _ value: UInt64, width: Int = 4) {
            for index in 0..<width { scratch[index] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(index))) }
            let transport = transport
            scratch.withUnsafeBytes {
                transport.barWrite(index: 0, offset: offset, data: UnsafeRawBufferPointer(rebasing: $0[0..<width]))
            }
        }

        mutating func read(_ offset: UInt64, width: Int = 4) -> UInt64 {
            let transport = transport
            scratch.withUnsafeMutableBytes {
                transport.barRead(
                    index: 0, offset: offset, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<width]))
            }
            return scratch[0..<width].enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        }
    }
}

extension FakeDriver {
    /// Forgets the rings' contents, as a driver does before it sets a queue up again.
    func restart() {
        try? memory.zero(at: availableRing, length: 0x1000)
        try? memory.zero(at: usedRing, length: 0x1000)
        availableIndex = 0
    }

    private func requestBase(_ slot: Int) -> UInt64 { 0x100000 + UInt64(slot) * 0x2000 }

    /// Publishes a 4 KiB read of `block` using descriptors 3·slot ..< 3·slot + 3.
    func publishRead(slot: Int, block: UInt64) {
        let base = requestBase(slot)
        let first = UInt16(3 * slot)
        try? memory.store(BlockRequest.typeIn, at: base)
        try? memory.store(UInt32(0), at: base + 4)
        try? memory.store(block * 8, at: base + 8)
        try? memory.store(UInt64.max, at: base + 0x1000)
        try? memory.store(UInt8(0xFF), at: base + 0x1F00)
        try? setDescriptor(first, address: base, length: 16, flags: 1, next: first + 1)
        try? setDescriptor(first + 1, address: base + 0x1000, length: 4096, flags: 2 | 1, next: first + 2)
        try? setDescriptor(first + 2, address: base + 0x1F00, length: 1, flags: 2)
        try? memory.store(first, at: availableRing + 4 + 2 * UInt64(availableIndex % size))
        availableIndex &+= 1
        publishAvailableIndex()
    }

    /// The status byte and the block number read into slot `slot`'s buffer.
    func readResult(slot: Int) -> (status: UInt8, block: UInt64)? {
        let base = requestBase(slot)
        guard let status = try? memory.load(UInt8.self, at: base + 0x1F00),
            let block = try? memory.load(UInt64.self, at: base + 0x1000)
        else { return nil }
        return (status, block)
    }
}
