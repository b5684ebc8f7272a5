import Hypervisor
@testable import VirtioDevices
import XCTest

final class VirtqueueTests: XCTestCase {
    let read: UInt16 = 0
    let next: UInt16 = 1
    let write: UInt16 = 2
    let indirect: UInt16 = 4

    func pop(_ queue: Virtqueue) throws -> DescriptorChainResult {
        try XCTUnwrap(try queue.popAvailable())
    }

    func testChainIsReadInOrderAndReturnedThroughTheUsedRing() throws {
        let driver = try FakeDriver()
        let queue = try driver.queue()
        try driver.setDescriptor(3, address: 0x10000, length: 16, flags: next, next: 5)
        try driver.setDescriptor(5, address: 0x20000, length: 512, flags: write)
        try driver.makeAvailable(3)
        XCTAssertTrue(queue.hasAvailable)
        guard case .chain(let chain) = try pop(queue) else { return XCTFail("chain expected") }
        XCTAssertEqual(chain.head, 3)
        XCTAssertEqual(
            chain.buffers,
            [
                VirtqueueBuffer(address: 0x10000, length: 16, isDeviceWritable: false),
                VirtqueueBuffer(address: 0x20000, length: 512, isDeviceWritable: true),
            ])
        XCTAssertEqual(chain.writableLength, 512)
        XCTAssertNil(try queue.popAvailable())
        queue.addUsed(head: 3, length: 512)
        XCTAssertEqual(driver.usedIndex, 1)
        XCTAssertEqual(try driver.usedElement(0).id, 3)
        XCTAssertEqual(try driver.usedElement(0).length, 512)
    }

    func testIndirectTable() throws {
        let driver = try FakeDriver()
        let queue = try driver.queue()
        let table: UInt64 = 0x8000
        try driver.setDescriptor(0, address: 0x10000, length: 16, flags: next, next: 1, table: table)
        try driver.setDescriptor(1, address: 0x11000, length: 4096, flags: write | next, next: 2, table: table)
        try driver.setDescriptor(2, address: 0x12000, length: 1, flags: write, table: table)
        try driver.setDescriptor(0, address: table, length: 48, flags: indirect)
        try driver.makeAvailable(0)
        guard case .chain(let chain) = try pop(queue) else { return XCTFail("chain expected") }
        XCTAssertEqual(chain.buffers.map(\.length), [16, 4096, 1])
        XCTAssertEqual(chain.readable.count, 1)
        XCTAssertEqual(chain.writable.count, 2)
    }

    func assertFailure(
        _ expected: VirtqueueError, file: StaticString = #filePath, line: UInt = #line,
        setUp: (FakeDriver) throws -> Void
    ) throws {
        let driver = try FakeDriver()
        let queue = try driver.queue()
        try setUp(driver)
        try driver.makeAvailable(0)
        XCTAssertEqual(try pop(queue), .failure(head: 0, error: expected), file: file, line: line)
        // The broken chain was consumed; the queue goes on.
        XCTAssertFalse(queue.hasAvailable, file: file, line: line)
    }

    func testCyclicChainIsDetected() throws {
        try assertFailure(.chainTooLong) { driver in
            try driver.setDescriptor(0, address: 0x10000, length: 1, flags: self.next, next: 1)
            try driver.setDescriptor(1, address: 0x10000, length: 1, flags: self.next, next: 0)
        }
    }

    func testNextOutOfRange() throws {
        try assertFailure(.nextOutOfRange(8)) { driver in
            try driver.setDescriptor(0, address: 0x10000, length: 1, flags: self.next, next: 8)
        }
    }

    func testHeadOutOfRange() throws {
        let driver = try FakeDriver()
        let queue = try driver.queue()
        try driver.makeAvailable(9)
        XCTAssertEqual(try pop(queue), .failure(head: 9, error: .headOutOfRange(9)))
    }

    func testNestedIndirectIsRejected() throws {
        try assertFailure(.nestedIndirect) { driver in
            try driver.setDescriptor(0, address: 0x9000, length: 16, flags: self.indirect, table: 0x8000)
            try driver.setDescriptor(0, address: 0x8000, length: 16, flags: self.indirect)
        }
    }

    func testIndirectWithNextIsRejected() throws {
        try assertFailure(.indirectWithNext) { driver in
            try driver.setDescriptor(0, address: 0x8000, length: 16, flags: self.indirect | self.next, next: 1)
        }
    }

    func testIndirectTableOfBadLength() throws {
        try assertFailure(.invalidIndirectTable(length: 20)) { driver in
            try driver.setDescriptor(0, address: 0x8000, length: 20, flags: self.indirect)
        }
    }

    func testBufferOutsideMemoryAndAddressOverflow() throws {
        try assertFailure(.bufferOutsideMemory(address: 0xFFFF0, length: 0x20)) { driver in
            try driver.setDescriptor(0, address: 0xFFFF0, length: 0x20, flags: self.read)
        }
        try assertFailure(.bufferOutsideMemory(address: UInt64.max - 4, length: 16)) { driver in
            try driver.setDescriptor(0, address: UInt64.max - 4, length: 16, flags: self.read)
        }
    }

    func testTotalLengthOverflow() throws {
        // An indirect table reusing one 1 MiB-long... buffer cannot exceed RAM, so use a big queue.
        let driver = try FakeDriver(size: 8, memoryInBytes: 3 << 30)
        let queue = try driver.queue()
        try driver.setDescriptor(0, address: 0, length: 0xC000_0000, flags: write | next, next: 1)
        try driver.setDescriptor(1, address: 0, length: 0x8000_0000, flags: write)
        try driver.makeAvailable(0)
        XCTAssertEqual(try pop(queue), .failure(head: 0, error: .totalLengthOverflow))
    }

    func testReadableAfterWritableIsRejected() throws {
        try assertFailure(.readableAfterWritable) { driver in
            try driver.setDescriptor(0, address: 0x10000, length: 1, flags: self.write | self.next, next: 1)
            try driver.setDescriptor(1, address: 0x10000, length: 1, flags: self.read)
        }
    }

    func testAvailableIndexJumpIsAnError() throws {
        let driver = try FakeDriver()
        let queue = try driver.queue()
        try driver.setAvailableIndex(9)  // 9 pending in a ring of 8
        XCTAssertThrowsError(try queue.popAvailable()) { error in
            XCTAssertEqual(error as? VirtqueueError, .availableIndexJump(from: 0, to: 9))
        }
    }

    func testRingValidation() throws {
        let driver = try FakeDriver()
        XCTAssertThrowsError(
            try Virtqueue(
                memory: driver.memory, size: 6, descriptorTable: 0x1000, availableRing: 0x4000, usedRing: 0x5000,
                eventIndex: false))
        XCTAssertThrowsError(
            try Virtqueue(
                memory: driver.memory, size: 8, descriptorTable: 0x1008, availableRing: 0x4000, usedRing: 0x5000,
                eventIndex: false))
        XCTAssertThrowsError(
            try Virtqueue(
                memory: driver.memory, size: 8, descriptorTable: 0x1000, availableRing: 0x4000, usedRing: 0xFFFFC,
                eventIndex: false))
    }

    func testEventIndexSuppressesInterruptsUntilUsedEventIsPassed() throws {
        let driver = try FakeDriver()
        let queue = try driver.queue(eventIndex: true)
        try driver.setUsedEvent(1)  // interrupt once used_idx passes 1, i.e. after the second completion
        for head: UInt16 in 0..<3 {
            try driver.setDescriptor(head, address: 0x10000, length: 1, flags: write)
            try driver.makeAvailable(head)
        }
        _ = try pop(queue)
        XCTAssertEqual(driver.availableEvent, 1, "avail_event tracks what the device consumed")
        queue.addUsed(head: 0, length: 1)
        XCTAssertFalse(queue.needsInterrupt(), "used_idx 1 has not passed used_event 1")
        _ = try pop(queue)
        queue.addUsed(head: 1, length: 1)
        XCTAssertTrue(queue.needsInterrupt(), "used_idx 2 passed used_event 1")
        _ = try pop(queue)
        queue.addUsed(head: 2, length: 1)
        XCTAssertFalse(queue.needsInterrupt(), "already signalled past used_event")
    }

    func testNoInterruptFlagWithoutEventIndex() throws {
        let driver = try FakeDriver()
        let queue = try driver.queue()
        try driver.setDescriptor(0, address: 0x10000, length: 1, flags: write)
        try driver.makeAvailable(0)
        _ = try pop(queue)
        queue.addUsed(head: 0, length: 1)
        try driver.setAvailableFlags(1)
        XCTAssertFalse(queue.needsInterrupt())
        try driver.setAvailableFlags(0)
        XCTAssertTrue(queue.needsInterrupt())
    }

    func testNotificationSuppression() throws {
        let driver = try FakeDriver()
        let queue = try driver.queue()
        queue.setNotifications(enabled: false)
        XCTAssertEqual(driver.usedFlags, 1, "VRING_USED_F_NO_NOTIFY")
        queue.setNotifications(enabled: true)
        XCTAssertEqual(driver.usedFlags, 0)
    }

    /// The driver's side of EVENT_IDX (vring_need_event): does publishing old..<new call for a kick?
    func driverKicks(event: UInt16, old: UInt16, new: UInt16) -> Bool { (new &- event &- 1) < (new &- old) }

    func testEventIndexSuppressionKeepsAvailEventOutOfTheDriversReach() throws {
        let driver = try FakeDriver()
        let queue = try driver.queue(eventIndex: true)
        try driver.setDescriptor(0, address: 0x8000, length: 16, flags: 0)
        try driver.makeAvailable(0)
        _ = try queue.popAvailable()
        XCTAssertEqual(driver.availableEvent, 1, "kicks wanted: the next index the device will read")
        XCTAssertTrue(driverKicks(event: driver.availableEvent, old: 1, new: 2))
        queue.setNotifications(enabled: false)
        XCTAssertEqual(driver.usedFlags, 0, "EVENT_IDX suppresses through avail_event only")
        // Linux publishes chains as it adds them and checks for a kick later, so its "old" index
        // can lie behind what the device consumed (here 1); no batch of any size gets a kick.
        let size = UInt16(driver.size)
        for old: UInt16 in [0, 1] {
            for batch: UInt16 in [1, 7, size] {
                XCTAssertFalse(
                    driverKicks(event: driver.availableEvent, old: old, new: old &+ batch), "old \(old), batch \(batch)"
                )
            }
        }
        try driver.makeAvailable(0)
        _ = try queue.popAvailable()
        XCTAssertFalse(
            driverKicks(event: driver.availableEvent, old: 1, new: 2), "popping while polled keeps it out of reach")
        queue.setNotifications(enabled: true)
        XCTAssertEqual(driver.availableEvent, 2)
        XCTAssertTrue(driverKicks(event: driver.availableEvent, old: 2, new: 3))
    }
}

/// Per-chain work is bounded by the queue size, indirect tables included (virtio 1.2, 2.7.5.3.1).
final class VirtqueueBoundTests: XCTestCase {
    func testIndirectTableLongerThanTheQueueIsABrokenChain() throws {
        let driver = try FakeDriver(size: 8)
        let queue = try driver.queue()
        try driver.setDescriptor(0, address: 0x8000, length: 16 * 9, flags: 4)
        try driver.makeAvailable(0)
        XCTAssertEqual(try queue.popAvailable(), .failure(head: 0, error: .invalidIndirectTable(length: 16 * 9)))
        // A table of exactly the queue size is fine.
        for index in 0..<8 {
            try driver.setDescriptor(
                UInt16(index), address: 0x10000, length: 1, flags: index < 7 ? 1 : 0, next: UInt16(index + 1),
                table: 0x8000)
        }
        try driver.setDescriptor(1, address: 0x8000, length: 16 * 8, flags: 4)
        try driver.makeAvailable(1)
        guard case .chain(let chain) = try queue.popAvailable() else { return XCTFail("chain expected") }
        XCTAssertEqual(chain.buffers.count, 8)
    }
}
