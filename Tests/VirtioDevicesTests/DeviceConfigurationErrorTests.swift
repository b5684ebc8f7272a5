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
