import Hypervisor
@testable import VirtioDevices
import XCTest

/// The virtio-net control queue with a fake driver: VQ_PAIRS_SET within the device's pairs is
/// acknowledged, anything else answered with VIRTIO_NET_ERR, and every command returned.
final class NetControlHandlerTests: XCTestCase {
    var driver: FakeDriver!
    var context: QueueContext!
    var handler: NetControlHandler!
    let statistics = QueueStatistics()

    override func setUpWithError() throws {
        driver = try FakeDriver(size: 16, memoryInBytes: 1 << 20)
        context = try driver.context()
        handler = NetControlHandler(
            name: "ctl-test", context: context, memory: driver.memory, queuePairs: 4, statistics: statistics,
            onBrokenQueue: { _ in })
    }

    func ackAddress(_ index: Int) -> UInt64 { UInt64(0x10000 + index * 0x100 + 0x80) }

    /// Command `index` in descriptors 3·index...: its bytes in `parts` readable buffers, then a
    /// one-byte ack preset to 0xFF (left out with `ack` false).
    func post(_ index: Int, command: [UInt8], parts: Int = 1, ack: Bool = true) throws {
        let base = UInt64(0x10000 + index * 0x100)
        let first = UInt16(3 * index)
        try driver.memory.write(command, at: base)
        try driver.memory.store(UInt8(0xFF), at: ackAddress(index))
        let split = parts == 2 ? command.count / 2 : command.count
        let pieces = parts == 2 ? [(base, split), (base + UInt64(split), command.count - split)] : [(base, split)]
        var descriptor = first
        for (offset, piece) in pieces.enumerated() {
            let last = offset == pieces.count - 1 && !ack
            try driver.setDescriptor(
                descriptor, address: piece.0, length: UInt32(piece.1), flags: last ? 0 : 1, next: descriptor + 1)
            descriptor += 1
        }
        if ack { try driver.setDescriptor(descriptor, address: ackAddress(index), length: 1, flags: 2) }
        try driver.makeAvailable(first)
    }

    func setPairs(_ count: UInt16) -> [UInt8] {
        [NetControlHandler.classMultiQueue, NetControlHandler.commandSetPairs] + LittleEndian.bytes(count)
    }

    func testAValidPairCountIsAcknowledgedAndTheDriverInterrupted() throws {
        try post(0, command: setPairs(4))
        try post(1, command: setPairs(1), parts: 2)
        XCTAssertEqual(handler.poll(budget: 8), 2)
        XCTAssertEqual(try driver.memory.load(UInt8.self, at: ackAddress(0)), NetControlHandler.ok)
        XCTAssertEqual(
            try driver.memory.load(UInt8.self, at: ackAddress(1)), NetControlHandler.ok, "split over two buffers")
        XCTAssertEqual(driver.usedIndex, 2)
        XCTAssertEqual(try driver.usedElement(0).length, 1)
        XCTAssertEqual(
            (context.interrupt as? CountingInterrupt)?.raised.load(ordering: .relaxed), 1, "one interrupt per poll")
        XCTAssertEqual(statistics.errors.count, 0)
    }

    func testBadCountsAndUnknownCommandsGetAnError() throws {
        try post(0, command: setPairs(0))
        try post(1, command: setPairs(5))
        try post(2, command: [1, 0, 0, 0])  // VIRTIO_NET_CTRL_RX: not offered
        try post(3, command: [NetControlHandler.classMultiQueue])  // too short
        XCTAssertEqual(handler.poll(budget: 8), 4)
        for index in 0..<4 {
            XCTAssertEqual(
                try driver.memory.load(UInt8.self, at: ackAddress(index)), NetControlHandler.error, "command \(index)")
        }
        XCTAssertEqual(statistics.errors.count, 4)
        XCTAssertEqual(driver.usedIndex, 4, "every command is returned")
    }

    func testACommandWithoutAnAckBufferIsReturnedEmpty() throws {
        try post(0, command: setPairs(2), ack: false)
        XCTAssertEqual(handler.poll(budget: 8), 1)
        XCTAssertEqual(driver.usedIndex, 1)
        XCTAssertEqual(try driver.usedElement(0).length, 0)
    }

    func testAPollTakesAtMostItsBudget() throws {
        for index in 0..<5 { try post(index, command: setPairs(1)) }
        XCTAssertEqual(handler.poll(budget: 2), 2)
        XCTAssertEqual(driver.usedIndex, 2)
        XCTAssertTrue(handler.prepareToSleep(), "commands still wait: the handler must not sleep")
        XCTAssertEqual(handler.poll(budget: 8), 3)
        XCTAssertFalse(handler.prepareToSleep())
    }
}
