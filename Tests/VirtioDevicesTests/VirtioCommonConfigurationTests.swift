@testable import VirtioDevices
import XCTest

/// The common configuration registers as a value, without a VM: what a driver's writes leave
/// behind, including the writes a hostile driver makes.
final class VirtioCommonConfigurationTests: XCTestCase {
    var registers = VirtioCommonConfiguration(
        offeredFeatures: VirtioFeature.version1 | 1 << 9, queueMaxSizes: [256, 64], vectorCount: 3)

    func testFeatureWordsAreSelectedByTheSelectRegister() {
        registers.write(offset: 0x00, width: 4, value: 1)
        XCTAssertEqual(registers.read(offset: 0x04), VirtioFeature.version1 >> 32)
        registers.write(offset: 0x00, width: 4, value: 0)
        XCTAssertEqual(registers.read(offset: 0x04), 1 << 9)
        registers.write(offset: 0x00, width: 4, value: 7)
        XCTAssertEqual(registers.read(offset: 0x04), 0, "a select past the two words reads 0")
    }

    func testDriverFeaturesAreFrozenOnceFeaturesOKIsSet() {
        registers.write(offset: 0x08, width: 4, value: 1)
        registers.write(offset: 0x0C, width: 4, value: VirtioFeature.version1 >> 32)
        XCTAssertTrue(registers.featuresAcceptable)
        registers.status = DeviceStatusTransition.featuresOK
        registers.write(offset: 0x0C, width: 4, value: 0)
        XCTAssertEqual(registers.driverFeatures, VirtioFeature.version1, "FEATURES_OK froze the selection")
    }

    func testFeaturesNeverOfferedAreNotAcceptable() {
        registers.driverFeatures = VirtioFeature.version1 | 1 << 10
        XCTAssertFalse(registers.featuresAcceptable)
        registers.driverFeatures = 1 << 9
        XCTAssertFalse(registers.featuresAcceptable, "VERSION_1 is required")
    }

    func testAStatusWriteIsHandedBackUnapplied() {
        XCTAssertEqual(registers.write(offset: 0x14, width: 1, value: 0x1_0F), 0x0F)
        XCTAssertEqual(registers.status, 0)
        XCTAssertNil(registers.write(offset: 0x16, width: 2, value: 1))
    }

    func testQueueAddressesTakeHalvesOrWholeWordsUntilDriverOK() {
        registers.write(offset: 0x16, width: 2, value: 1)
        registers.write(offset: 0x20, width: 4, value: 0x1234_5000)
        registers.write(offset: 0x24, width: 4, value: 0x1)
        XCTAssertEqual(registers.queues[1].descriptorTable, 0x1_1234_5000)
        registers.write(offset: 0x28, width: 8, value: 0xAB_CDEF_0000)
        XCTAssertEqual(registers.read(offset: 0x28), 0xAB_CDEF_0000)
        XCTAssertEqual(registers.read(offset: 0x2C), 0xAB)
        registers.status = DeviceStatusTransition.driverOK
        registers.write(offset: 0x30, width: 8, value: 0x9000)
        registers.write(offset: 0x1C, width: 2, value: 1)
        XCTAssertEqual(registers.queues[1].deviceArea, 0, "no queue register changes after DRIVER_OK")
        XCTAssertFalse(registers.queues[1].enabled)
    }

    func testQueueSizeMayShrinkButNeverGrowOrBecomeZero() {
        registers.write(offset: 0x16, width: 2, value: 1)
        registers.write(offset: 0x18, width: 2, value: 65)
        XCTAssertEqual(registers.read(offset: 0x18), 64)
        registers.write(offset: 0x18, width: 2, value: 0)
        XCTAssertEqual(registers.read(offset: 0x18), 64)
        registers.write(offset: 0x18, width: 2, value: 32)
        XCTAssertEqual(registers.read(offset: 0x18), 32)
    }

    func testASelectPastTheQueuesReadsZeroAndWritesNothing() {
        registers.write(offset: 0x16, width: 2, value: 0xFFFF)
        for offset in stride(from: UInt64(0x18), through: 0x34, by: 2) {
            registers.write(offset: offset, width: 2, value: 0x7)
        }
        XCTAssertEqual(registers.read(offset: 0x18), 0)
        XCTAssertEqual(registers.read(offset: 0x1A), UInt64(VirtioCommonConfiguration.noVector))
        XCTAssertEqual(registers.queues.map(\.size), [256, 64])
        XCTAssertEqual(
            registers.queues.map(\.vector), [VirtioCommonConfiguration.noVector, VirtioCommonConfiguration.noVector])
    }

    func testVectorsPastTheTableReadBackAsNoVector() {
        registers.write(offset: 0x10, width: 2, value: 2)
        XCTAssertEqual(registers.read(offset: 0x10), 2)
        registers.write(offset: 0x10, width: 2, value: 3)
        XCTAssertEqual(registers.read(offset: 0x10), UInt64(VirtioCommonConfiguration.noVector))
    }

    func testAfterResetEverythingTheDriverWroteIsGone() {
        registers.write(offset: 0x16, width: 2, value: 1)
        registers.write(offset: 0x1C, width: 2, value: 1)
        registers.driverFeatures = VirtioFeature.version1
        registers.status = 0x0F
        let reset = registers.afterReset
        XCTAssertEqual(reset.status, 0)
        XCTAssertEqual(reset.driverFeatures, 0)
        XCTAssertEqual(reset.queueSelect, 0)
        XCTAssertFalse(reset.queues[1].enabled)
        XCTAssertEqual(reset.queueMaxSizes, [256, 64])
    }
}
