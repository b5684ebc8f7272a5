import Glibc
import Hypervisor
@testable import VirtioDevices
import XCTest

/// The virtio-net queue pair against a datagram socket standing in for the TAP (one read, one
/// frame), with receive and transmit rings a hostile driver fills.
final class NetQueuePairHandlerTests: XCTestCase {
    static let rxRing: UInt64 = 0x10000
    static let txRing: UInt64 = 0x20000
    var rx: FakeDriver!
    var tx: FakeDriver!
    var handler: NetQueuePairHandler!
    /// The host's end of the stand-in TAP.
    var host: Int32 = -1
    var tap: Int32 = -1
    let rxStatistics = QueueStatistics()
    let txStatistics = QueueStatistics()
    var brokenReasons: [String] = []

    func makeHandler(mergeable: Bool = true, size: UInt16 = 256) throws {
        var pair: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &pair), 0)
        (tap, host) = (pair[0], pair[1])
        // One memory for both rings, as in a guest: the tx driver shares the rx driver's RAM.
        rx = try FakeDriver(size: size, memoryInBytes: 4 << 20)
        tx = try FakeDriver(size: size, memory: rx.memory, base: 0x100000)
        handler = NetQueuePairHandler(
            name: "net-test", tapFD: tap, rx: try rx.context(index: 0), tx: try tx.context(index: 1),
            memory: rx.memory, mergeable: mergeable, rxStatistics: rxStatistics,
            txStatistics: txStatistics, onBrokenQueue: { [unowned self] in brokenReasons.append($0) })
    }

    override func tearDown() {
        handler = nil
        if tap >= 0 { close(tap) }
        if host >= 0 { close(host) }
    }

    /// Sends a frame (virtio_net_hdr + payload) from the host towards the guest.
    func sendFrame(bytes: Int = 100) {
        let frame = [UInt8](repeating: 0xAB, count: bytes)
        XCTAssertEqual(send(host, frame, frame.count, 0), frame.count)
    }

    /// Posts `count` receive chains, each one descriptor of `length` bytes (0: a zero-capacity chain).
    func postReceiveChains(_ count: Int, length: UInt32, writable: Bool = true) throws {
        for index in 0..<count {
            let descriptor = UInt16(index % Int(rx.size))
            try rx.setDescriptor(
                descriptor, address: 0x200000 + UInt64(descriptor) * 0x800, length: length, flags: writable ? 2 : 0)
            try rx.makeAvailable(descriptor)
        }
    }

    func testZeroCapacityChainsCostAtMostTheBudgetPerPollAndAreReturned() throws {
        try makeHandler()
        sendFrame()
        try postReceiveChains(256, length: 0)
        XCTAssertLessThanOrEqual(handler.poll(budget: 32), 64, "one poll consumes at most the budget of receive chains")
        XCTAssertEqual(rx.usedIndex, 32, "each consumed zero-capacity chain goes back empty, nothing is held")
        // The guest keeps re-posting them; the frame still waits for a real buffer.
        for _ in 0..<300 {
            _ = handler.poll(budget: 32)
            try postReceiveChains(32, length: 0)
        }
        XCTAssertEqual(rxStatistics.requests.count, 0, "no frame placed in zero-capacity chains")
        try postReceiveChains(1, length: 2048)
        for _ in 0..<20 { _ = handler.poll(budget: 32) }
        XCTAssertEqual(rxStatistics.requests.count, 1, "the frame lands once a usable buffer comes")
        XCTAssertTrue(brokenReasons.isEmpty)
    }

    func testReadOnlyReceiveChainsAreRefused() throws {
        try makeHandler()
        sendFrame()
        try postReceiveChains(8, length: 2048, writable: false)
        _ = handler.poll(budget: 32)
        XCTAssertEqual(rx.usedIndex, 8)
        XCTAssertEqual(try rx.usedElement(0).length, 0)
        XCTAssertEqual(rxStatistics.requests.count, 0)
        XCTAssertGreaterThanOrEqual(rxStatistics.errors.count, 8)
    }

    func testAFrameSpreadOverTinyBuffersHoldsAtMostTheQueueAndIsDropped() throws {
        try makeHandler(size: 16)
        sendFrame(bytes: 4000)
        // 1-byte buffers: the frame would need ~4000 chains, the ring holds 16.
        try postReceiveChains(16, length: 1)
        _ = handler.poll(budget: 32)
        XCTAssertEqual(rxStatistics.requests.count, 0, "the frame does not fit in a queue's worth of chains")
        XCTAssertGreaterThan(rxStatistics.errors.count, 0)
        let published = rx.usedIndex
        XCTAssertEqual(published, rx.availableIndex, "every chain taken went back")
        // The device still works: a normal frame arrives in a normal buffer.
        sendFrame()
        try postReceiveChains(1, length: 2048)
        for _ in 0..<4 { _ = handler.poll(budget: 32) }
        XCTAssertEqual(rxStatistics.requests.count, 1)
    }

    func testMergeableFrameIsPlacedAcrossChainsWithNumBuffers() throws {
        try makeHandler()
        sendFrame(bytes: 3000)
        try postReceiveChains(4, length: 1024)
        _ = handler.poll(budget: 32)
        XCTAssertEqual(rxStatistics.requests.count, 1)
        XCTAssertEqual(rx.usedIndex, 3)
        XCTAssertEqual(try rx.usedElement(0).length + rx.usedElement(1).length + rx.usedElement(2).length, 3000)
        XCTAssertEqual(try rx.memory.load(UInt16.self, at: 0x200000 + 10), 3, "num_buffers")
    }

    func testTransmitStopsAtTheBudgetAndKeepsAFrameTheTAPRefused() throws {
        try makeHandler()
        // Fill the host's receive queue so the stand-in TAP says EAGAIN.
        var filled = 0
        let junk = [UInt8](repeating: 0, count: 60000)
        while send(tap, junk, junk.count, 0) > 0 { filled += 1 }
        XCTAssertEqual(errno, EAGAIN)
        for index in 0..<40 {
            let descriptor = UInt16(index)
            try tx.setDescriptor(descriptor, address: 0x300000 + UInt64(index) * 0x100, length: 100, flags: 0)
            try tx.makeAvailable(descriptor)
        }
        XCTAssertEqual(handler.poll(budget: 32), 0, "a full TAP stops the poll at once, no waiting")
        let refusedBy = MonotonicClock.now()
        XCTAssertEqual(tx.usedIndex, 0)
        XCTAssertTrue(handler.prepareToSleep(), "a refused frame is work still waiting")
        // Drain the host side: the frame that was refused goes first, then the rest, 32 per poll.
        var buffer = [UInt8](repeating: 0, count: 65536)
        while recv(host, &buffer, buffer.count, 0) > 0 {}
        let drained = MonotonicClock.now()
        XCTAssertEqual(handler.poll(budget: 32), 32)
        XCTAssertEqual(tx.usedIndex, 32)
        _ = handler.poll(budget: 32)
        XCTAssertEqual(tx.usedIndex, 40)
        XCTAssertEqual(txStatistics.errors.count, 0)
        XCTAssertEqual(txStatistics.requests.count, 40, "the refused frame counts once")
        // Each sent frame's latency: the refused one waited from its poll until the TAP took it.
        let latency = txStatistics.latency.snapshot
        XCTAssertEqual(latency.requests, 40)
        XCTAssertGreaterThanOrEqual(latency.sum, drained - refusedBy, "the refused frame's wait is in the sum")
        XCTAssertEqual(rxStatistics.latency.snapshot.requests, 0, "nothing received")
    }

    /// A frame that waits for the guest's receive buffers shows the wait in the receive latency.
    func testReceiveLatencyRunsFromTheTAPReadToTheUsedRing() throws {
        try makeHandler()
        sendFrame()
        _ = handler.poll(budget: 32)  // read off the TAP, no buffer to put it in
        let readBy = MonotonicClock.now()
        try postReceiveChains(1, length: 2048)
        let posted = MonotonicClock.now()
        _ = handler.poll(budget: 32)
        XCTAssertEqual(rxStatistics.requests.count, 1)
        let latency = rxStatistics.latency.snapshot
        XCTAssertEqual(latency.requests, 1)
        XCTAssertGreaterThanOrEqual(latency.sum, posted - readBy, "it waited from its read until the buffer came")
    }
}
