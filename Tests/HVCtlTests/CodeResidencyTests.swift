import Foundation
import XCTest

@testable import hvctl

/// CodeResidency's drop of unwritten pages in writable file mappings: what was written stays,
/// what is still the file's own leaves the resident set and reads back the same.
final class CodeResidencyTests: XCTestCase {
    func testUnwrittenDataPagesAreDroppedAndWrittenOnesKept() throws {
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("residency-\(UUID().uuidString)").path
        defer { unlink(path) }
        // Four pages of a known pattern, mapped privately and writable as the executable's data is.
        let contents = Data((0..<(4 * pageSize)).map { UInt8(truncatingIfNeeded: $0 / pageSize + 1) })
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: contents))
        let fd = open(path, O_RDONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        let mapping = try XCTUnwrap(mmap(nil, 4 * pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0))
        XCTAssertNotEqual(mapping, MAP_FAILED)
        defer { munmap(mapping, 4 * pageSize) }
        let bytes = mapping.assumingMemoryBound(to: UInt8.self)
        bytes[0] = 0xAA  // page 0: a private copy now
        var sum = 0
        for page in 1..<4 { sum += Int(bytes[page * pageSize]) }  // pages 1-3: read, still the file's
        XCTAssertEqual(sum, 2 + 3 + 4)
        XCTAssertEqual(try present(mapping, pages: 4), [true, true, true, true])

        // Nothing else in this process touches the test's mapping while its pages are dropped.
        let start = UInt(bitPattern: mapping)
        let dropped = CodeResidency.dropUnwrittenPages { $0.lowerBound == start }
        XCTAssertEqual(dropped, 3 * pageSize / 1024)
        XCTAssertEqual(try present(mapping, pages: 4), [true, false, false, false])
        XCTAssertEqual(bytes[0], 0xAA, "the written page is kept")
        XCTAssertEqual(bytes[1], 1)
        for page in 1..<4 { XCTAssertEqual(Int(bytes[page * pageSize + 7]), page + 1, "page \(page) reads back") }
    }

    /// With another thread running, a write could land between the check and the drop and be
    /// lost: the executable's data is then left alone.
    func testNothingIsDroppedWhileAnotherThreadRuns() {
        let started = DispatchSemaphore(value: 0)
        let finish = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            started.signal()
            finish.wait()
        }
        started.wait()
        XCTAssertNil(CodeResidency.trimUnwrittenData())
        finish.signal()
    }

    /// Which of `pages` pages from `address` are mapped, from /proc/self/pagemap.
    private func present(_ address: UnsafeMutableRawPointer, pages: Int) throws -> [Bool] {
        let pagemap = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/self/pagemap"))
        defer { try? pagemap.close() }
        let pageSize = UInt64(sysconf(Int32(_SC_PAGESIZE)))
        try pagemap.seek(toOffset: UInt64(UInt(bitPattern: address)) / pageSize * 8)
        let data = try XCTUnwrap(try pagemap.read(upToCount: pages * 8))
        return (0..<pages).map { index in
            data[(index * 8)..<(index * 8 + 8)].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } >> 63 == 1
        }
    }
}
