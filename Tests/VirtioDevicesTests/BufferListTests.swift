@testable import VirtioDevices
import XCTest

final class BufferListTests: XCTestCase {
    func buffer(_ index: Int) -> VirtqueueBuffer {
        VirtqueueBuffer(address: UInt64(index) << 12, length: UInt32(index + 1), isDeviceWritable: index % 2 == 1)
    }

    /// Inline up to its capacity, then in an array: the same buffers in the same order either way.
    func testAppendPastTheInlineCapacityKeepsEveryBuffer() {
        var list = BufferList()
        for count in 0..<10 {
            XCTAssertEqual(Array(list), (0..<count).map(buffer))
            list.append(buffer(count))
        }
        XCTAssertEqual(list.count, 10)
        XCTAssertEqual(list.last, buffer(9))
    }

    func testRemoveLastInlineAndSpilled() {
        var inline: BufferList = [buffer(0), buffer(1), buffer(2)]
        inline.removeLast()
        XCTAssertEqual(Array(inline), [buffer(0), buffer(1)])
        var spilled = BufferList((0..<6).map(buffer))
        spilled.removeLast()
        spilled.removeLast()
        XCTAssertEqual(Array(spilled), (0..<4).map(buffer))
        spilled.append(buffer(7))
        XCTAssertEqual(Array(spilled), (0..<4).map(buffer) + [buffer(7)])
    }

    /// Equal by contents, whether held inline or spilled.
    func testEqualityIgnoresStorage() {
        var shrunk = BufferList((0..<5).map(buffer))
        shrunk.removeLast()
        XCTAssertEqual(shrunk, BufferList((0..<4).map(buffer)))
        XCTAssertNotEqual(shrunk, BufferList((0..<3).map(buffer)))
        XCTAssertNotEqual(BufferList([buffer(1)]), BufferList([buffer(2)]))
    }
}
