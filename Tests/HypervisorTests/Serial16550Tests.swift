import Hypervisor
import Synchronization
import XCTest

/// The UART's register semantics as Linux's 8250 driver probes and uses them.
final class Serial16550Tests: XCTestCase {
    final class Log<Element: Sendable>: Sendable {
        private let items = Lock<[Element]>([])
        func append(_ item: Element) { items.withLock { $0.append(item) } }
        func withLock<R>(_ body: ([Element]) -> R) -> R { items.withLock { body($0) } }
    }

    let output = Log<UInt8>()
    let levels = Log<Bool>()
    var uart: Serial16550!

    override func setUp() {
        let output = output
        let levels = levels
        uart = Serial16550(output: { output.append($0) }, setIRQLevel: { levels.append($0) })
    }

    func read(_ offset: UInt64) -> UInt8 {
        var value: UInt8 = 0
        withUnsafeMutableBytes(of: &value) { uart.read(offset: offset, into: $0) }
        return value
    }

    func write(_ offset: UInt64, _ value: UInt8) {
        withUnsafeBytes(of: value) { uart.write(offset: offset, data: $0) }
    }

    func testLoopbackProbeMatchesA16550() {
        write(4, 0x10 | 0x0A)  // loopback with RTS and OUT2
        XCTAssertEqual(read(6) & 0xF0, 0x90, "CTS and DCD reflect RTS and OUT2")
        write(0, 0x55)
        XCTAssertEqual(read(5) & 0x01, 1, "looped-back byte is ready")
        XCTAssertEqual(read(0), 0x55)
        XCTAssertTrue(output.withLock { $0.isEmpty }, "loopback transmits nothing")
        write(2, 0x01)  // enable FIFOs
        XCTAssertEqual(read(2) & 0xC0, 0xC0, "16550A FIFO bits")
    }

    func testTransmitInterruptIsRaisedAndAcknowledged() {
        write(4, 0x08)  // OUT2 gates the interrupt
        write(1, 0x02)  // enable THR-empty interrupt
        XCTAssertEqual(levels.withLock { $0 }, [true])
        XCTAssertEqual(read(2) & 0x0F, 0x02, "THR empty pending")
        XCTAssertEqual(read(2) & 0x0F, 0x01, "reading IIR acknowledged it")
        XCTAssertEqual(levels.withLock { $0 }, [true, false])
        write(0, 0x41)
        XCTAssertEqual(output.withLock { $0 }, [0x41])
        XCTAssertEqual(levels.withLock { $0 }, [true, false, true], "THR empty again after each byte")
    }

    func testReceivedInputRaisesTheInterruptUntilDrained() {
        write(4, 0x08)
        write(1, 0x01)  // received-data interrupt
        uart.enqueueInput(Array("hi".utf8))
        XCTAssertEqual(levels.withLock { $0 }, [true])
        XCTAssertEqual(read(2) & 0x0F, 0x04)
        XCTAssertEqual(read(0), UInt8(ascii: "h"))
        XCTAssertEqual(read(0), UInt8(ascii: "i"))
        XCTAssertEqual(read(5) & 0x01, 0, "no more data")
        XCTAssertEqual(levels.withLock { $0 }, [true, false])
    }

    func testDivisorLatchSharesThePorts() {
        write(3, 0x80)
        write(0, 0x01)
        write(1, 0x00)
        XCTAssertEqual(read(0), 0x01)
        write(3, 0x03)
        write(0, 0x42)
        XCTAssertEqual(output.withLock { $0 }, [0x42], "with DLAB clear, offset 0 is THR again")
    }

    func testLoopbackCannotGrowTheReceiveFIFOPastItsCapacity() {
        write(4, 0x10 | 0x08)
        for _ in 0..<20_000 { write(0, 0x41) }
        XCTAssertEqual(read(5) & 0x02, 0x02, "overrun reported")
        XCTAssertEqual(read(5) & 0x02, 0, "reading LSR clears it")
        var drained = 0
        while read(5) & 0x01 != 0 {
            _ = read(0)
            drained += 1
        }
        XCTAssertEqual(drained, 4096, "the FIFO held its capacity, the rest was lost")
        write(4, 0x08)
        uart.enqueueInput([1, 2, 3])  // room computed from a full FIFO must not trap
        XCTAssertEqual(read(0), 1)
    }
}
