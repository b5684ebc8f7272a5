import Hypervisor
import XCTest

/// The guest's ways to power off and reset, and the writes that must do nothing.
final class PowerControlTests: XCTestCase {
    private func events(after writes: [(device: KeyPath<PowerControl, BusDevice>, offset: UInt64, value: UInt8)])
        -> [PowerControl.Event]
    {
        let events = Lock<[PowerControl.Event]>([])
        let power = PowerControl { event in events.withLock { $0.append(event) } }
        for write in writes {
            withUnsafeBytes(of: write.value) { power[keyPath: write.device].write(offset: write.offset, data: $0) }
        }
        return events.withLock { $0 }
    }

    func testSleepTypeFiveWithSleepEnablePowersOff() {
        XCTAssertEqual(events(after: [(\.acpiRegisters, 0, 0x20 | 5 << 2)]), [.powerOff])
    }

    func testOtherSleepWritesDoNothing() {
        // SLP_TYP 5 without SLP_EN, another sleep type with it, and the status register.
        XCTAssertEqual(events(after: [(\.acpiRegisters, 0, 5 << 2), (\.acpiRegisters, 0, 0x20 | 3 << 2)]), [])
        XCTAssertEqual(events(after: [(\.acpiRegisters, 1, 0x20 | 5 << 2)]), [])
    }

    func testACPIResetRegisterResetsOnlyWithItsValue() {
        XCTAssertEqual(events(after: [(\.acpiRegisters, 4, 0x06)]), [.reset])
        XCTAssertEqual(events(after: [(\.acpiRegisters, 4, 0x07), (\.acpiRegisters, 0, 0x06)]), [])
    }

    func testI8042CommandFEResets() {
        XCTAssertEqual(events(after: [(\.i8042, 4, 0xFE)]), [.reset])
        XCTAssertEqual(events(after: [(\.i8042, 0, 0xFE), (\.i8042, 4, 0xFD)]), [])
    }

    func testReadsAreZero() {
        let power = PowerControl { _ in }
        for device in [power.acpiRegisters, power.i8042] {
            var bytes: [UInt8] = [0xAA, 0xBB]
            bytes.withUnsafeMutableBytes { device.read(offset: 0, into: $0) }
            XCTAssertEqual(bytes, [0, 0])
        }
    }
}
