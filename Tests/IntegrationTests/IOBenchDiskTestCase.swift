import Foundation
import XCTest

/// Tests that run the iobench guest on a 16 MiB pattern disk: each test gets a scratch directory
/// of its own holding the disk, removed after it.
class IOBenchDiskTestCase: XCTestCase {
    var scratch: URL!
    var disk: String!

    override func setUpWithError() throws {
        try Toolchain.requireArtifacts()
        let name = "\(type(of: self))-\(UUID().uuidString)"
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        disk = scratch.appendingPathComponent("pattern.img").path
        try Toolchain.writeIOBenchDisk(to: disk, megabytes: 16)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }
}
