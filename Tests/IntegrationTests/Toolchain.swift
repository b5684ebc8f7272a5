import Foundation
import XCTest

/// Paths to what `make` builds, and a way to run them. Integration tests never skip: when an
/// artifact is missing they fail and say which `make` target builds it.
enum Toolchain {
    static let repository: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }()
    static var hvctl: String {
        ProcessInfo.processInfo.environment["HVCTL"] ?? repository.appendingPathComponent(".build/release/hvctl").path
    }
    static var rig: String { repository.appendingPathComponent("guest-images/nested/run").path }
    static var guestImages: URL { repository.appendingPathComponent("guest-images/out") }
    static var iobenchGuest: String { guestImages.appendingPathComponent("iobench.elf").path }

    static func requireArtifacts() throws {
        for path in [
            hvctl, rig, guestImages.appendingPathComponent("bzImage").path,
            guestImages.appendingPathComponent("l2-base.cpio").path, iobenchGuest,
        ] {
            guard FileManager.default.isExecutableFile(atPath: path) || FileManager.default.fileExists(atPath: path)
            else {
                XCTFail("\(path) is missing: run `make` (hvctl and guest-images) before the integration tests")
                throw CocoaError(.fileNoSuchFile)
            }
        }
    }

    /// Writes the disk iobench reads (`megabytes` MiB): block i starts with its sector number
    /// (8 * i), which the guest compares.
    static func writeIOBenchDisk(to path: String, megabytes: Int) throws {
        var bytes = [UInt8](repeating: 0, count: megabytes << 20)
        for block in 0..<(bytes.count / 4096) {
            withUnsafeBytes(of: UInt64(block * 8).littleEndian) {
                bytes.replaceSubrange(block * 4096..<block * 4096 + 8, with: $0)
            }
        }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    /// Runs a program to completion with stdin from /dev/null.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> Result
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Read both pipes concurrently so neither fills up and blocks the child.
        // Written by the reader only; read after `group.wait()`, which orders the two.
        nonisolated(unsafe) var errorData = Data()
        let group = DispatchGroup()
        DispatchQueue.global().async(group: group) { errorData = err.fileHandleForReading.readDataToEndOfFile() }
        let outputData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        group.wait()
        return Result(
            status: process.terminationStatus,
            stdout: String(decoding: outputData, as: UTF8.self),
            stderr: String(decoding: errorData, as: UTF8.self))
    }
}
