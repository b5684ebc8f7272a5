@testable import VirtioDevices
import XCTest

/// device_status writes as a state machine: reset → acknowledged → features OK → active.
final class DeviceStatusTransitionTests: XCTestCase {
    func transition(_ current: UInt8, _ written: UInt8, acceptable: Bool = true) -> DeviceStatusTransition {
        DeviceStatusTransition(current: current, written: written, featuresAcceptable: acceptable)
    }

    func testTheLinuxSequenceActivatesOnce() {
        XCTAssertEqual(transition(0, 1), .set(1, activate: false))
        XCTAssertEqual(transition(1, 3), .set(3, activate: false))
        XCTAssertEqual(transition(3, 11), .set(11, activate: false))
        XCTAssertEqual(transition(11, 15), .set(15, activate: true))
        XCTAssertEqual(transition(15, 15), .ignore, "rewriting the same status does nothing")
        XCTAssertEqual(transition(15, 0), .reset)
    }

    func testClearingABitWithoutAResetIsIgnored() {
        XCTAssertEqual(transition(15, 11), .ignore, "DRIVER_OK cleared")
        XCTAssertEqual(transition(11, 3), .ignore, "FEATURES_OK cleared")
        XCTAssertEqual(transition(15, 7), .ignore)
    }

    func testStepsMustComeInOrder() {
        XCTAssertEqual(transition(0, 2), .ignore, "DRIVER before ACKNOWLEDGE")
        XCTAssertEqual(transition(1, 9), .ignore, "FEATURES_OK before DRIVER")
        XCTAssertEqual(transition(3, 7), .ignore, "DRIVER_OK before FEATURES_OK")
        XCTAssertEqual(
            transition(3, 15), .ignore,
            "FEATURES_OK and DRIVER_OK in one write: DRIVER_OK needs an accepted FEATURES_OK")
        XCTAssertEqual(transition(0, 3), .set(3, activate: false), "ACKNOWLEDGE and DRIVER together are in order")
    }

    func testRefusedFeaturesKeepFeaturesOKClear() {
        XCTAssertEqual(transition(3, 11, acceptable: false), .ignore)
        XCTAssertEqual(transition(3, 11 | 128, acceptable: false), .set(3 | 128, activate: false))
    }

    func testNeedsResetAndFailedBlockActivation() {
        XCTAssertEqual(transition(11 | 64, 15 | 64), .ignore, "NEEDS_RESET: DRIVER_OK refused")
        XCTAssertEqual(transition(11 | 128, 15 | 128), .ignore, "FAILED: DRIVER_OK refused")
        XCTAssertEqual(transition(11, 15 | 128), .set(11 | 128, activate: false))
        XCTAssertEqual(transition(15 | 64, 15 | 64 | 128), .set(15 | 64 | 128, activate: false), "NEEDS_RESET is kept")
        XCTAssertEqual(transition(15 | 64, 0), .reset)
    }

    func testEveryWriteFromEveryStatusIsDecidedWithoutTrapping() {
        var activations = 0
        // Bits 4 and 5 are reserved: no status the device holds has them.
        for current in 0...255 where current & 0x30 == 0 {
            for written in 0...255 {
                let result = transition(UInt8(current), UInt8(written))
                if case .set(let status, let activate) = result {
                    XCTAssertEqual(status & UInt8(current) & ~64 & 0xFF, UInt8(current) & ~64, "only adds bits")
                    if activate {
                        activations += 1
                        XCTAssertEqual(UInt8(current) & 4, 0, "activates only from a status without DRIVER_OK")
                        XCTAssertNotEqual(UInt8(current) & 8, 0, "activates only from FEATURES_OK")
                    }
                }
            }
        }
        XCTAssertGreaterThan(activations, 0)
    }
}
