import Foundation
import Hypervisor
import VirtioDevices
import XCTest

/// Devices reject a configuration by naming its field and value, in the library's terms.
final class DeviceConfigurationErrorTests: XCTestCase {
    func configurationError(_ make: () throws -> Any) -> ConfigurationError? {
        do {
            _ = try make()
            return nil
        } catch {
            return error as? ConfigurationError
        }
    }

    func disk(_ path: String?) -> () throws -> Any {
        { try BlockDevice(configuration: BlockDeviceConfiguration(path: path, id: "t"), name: "t") }
    }

    func testADiskNamesTheFieldItCannotUse() throws {
        var zeroQueues = BlockDeviceConfiguration(path: "/dev/null", id: "t")
        zeroQueues.queueCount = 0
        XCTAssertEqual(
            configurationError { try BlockDevice(configuration: zeroQueues, name: "t") },
            ConfigurationError(.diskQueueCount, value: "0", "must be 1 to 64"))
        let missing = configurationError(disk("/nonexistent/d.img"))
        XCTAssertEqual(missing?.field, .diskPath)
        XCTAssertEqual(missing?.value, "/nonexistent/d.img")
        XCTAssertEqual(missing?.problem, "No such file or directory")
        XCTAssertEqual(configurationError(disk("/tmp"))?.field, .diskPath, "a directory")
        XCTAssertEqual(configurationError(disk(nil)), ConfigurationError(.diskPath, "a file-backed disk needs one"))
    }

    func scratchImage() -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("disk-\(UUID().uuidString).img").path
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(count: 4096)))
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    func testQueueSizeIsOfferedAndChecked() throws {
        var configuration = BlockDeviceConfiguration(path: scratchImage(), id: "t")
        configuration.queueCount = 2
        configuration.queueSize = 64
        XCTAssertEqual(try BlockDevice(configuration: configuration, name: "t").queueMaxSizes, [64, 64])
        for bad: UInt16 in [0, 1, 48, 2048] {
            configuration.queueSize = bad
            XCTAssertEqual(
                configurationError { try BlockDevice(configuration: configuration, name: "t") },
                ConfigurationError(.diskQueueSize, value: "\(bad)", "must be a power of two from 2 to 1024"))
        }
        var net = NetDeviceConfiguration(tapName: "sctest-q", mac: [0x52, 0x54, 0, 0, 0, 1])
        net.queueSize = 3
        XCTAssertEqual(configurationError { try NetDevice(configuration: net, name: "t") }?.field, .netQueueSize)
    }

    /// Read-write disks lock their image exclusively, read-only ones share it; closing unlocks.
    func testDiskImagesAreLocked() throws {
        let path = scratchImage()
        var readOnly = BlockDeviceConfiguration(path: path, id: "t")
        readOnly.readOnly = true
        var first: BlockDevice? = try BlockDevice(configuration: readOnly, name: "a")
        XCTAssertNoThrow(try BlockDevice(configuration: readOnly, name: "b"), "read-only disks share an image")
        let refused = configurationError(disk(path))
        XCTAssertEqual(refused?.field, .diskPath)
        XCTAssertEqual(refused?.problem, "in use by this process (another disk of it): cannot lock it for writing")
        XCTAssertNotNil(first)
        first = nil
        var writer: BlockDevice? = try BlockDevice(
            configuration: BlockDeviceConfiguration(path: path, id: "t"), name: "c")
        XCTAssertEqual(configurationError { try BlockDevice(configuration: readOnly, name: "d") }?.field, .diskPath)
        XCTAssertNotNil(writer)
        writer = nil
        XCTAssertNoThrow(try BlockDevice(configuration: readOnly, name: "e"), "unlocked when the writer closed")
    }

    func testANetDeviceNamesTheFieldItCannotUse() {
        var tooMany = NetDeviceConfiguration(tapName: "sctest-x", mac: [0x52, 0x54, 0, 0, 0, 1])
        tooMany.queuePairs = 17
        XCTAssertEqual(
            configurationError { try NetDevice(configuration: tooMany, name: "t") },
            ConfigurationError(.netQueuePairs, value: "17", "must be 1 to 16"))
        let badName = NetDeviceConfiguration(tapName: "this-name-is-too-long", mac: [0x52, 0x54, 0, 0, 0, 1])
        let error = configurationError { try NetDevice(configuration: badName, name: "t") }
        XCTAssertEqual(error?.field, .netTAPName)
        XCTAssertEqual(error?.value, "this-name-is-too-long")
        XCTAssertFalse(error?.description.contains("--") ?? true, "no command-line flag in a library error")
    }
}
