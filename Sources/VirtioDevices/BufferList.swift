/// The guest buffers of one descriptor chain or request, in order. Up to `inlineCapacity` are held
/// inline, so the chains a side core sees all the time (a block request's header, data and status;
/// a frame's one or two buffers) cost no allocation and no reference counting: an array per chain
/// and per request payload was a third of a side core's time at 1.3M IOPS (perf record on
/// `hvctl bench --null --qd 64`), as its allocation, the atomic retains and releases, and the
/// store-buffer drains those atomics wait for. Longer chains move every buffer to an array.
public struct BufferList: RandomAccessCollection, Equatable, ExpressibleByArrayLiteral {
    public static let inlineCapacity = 4

    private var inline = InlineArray<4, VirtqueueBuffer>(
        repeating: VirtqueueBuffer(address: 0, length: 0, isDeviceWritable: false))
    /// Every buffer, once there are more than `inlineCapacity`.
    private var spilled: [VirtqueueBuffer]?
    public private(set) var count = 0

    public init() {}

    public init(arrayLiteral elements: VirtqueueBuffer...) {
        self.init(elements)
    }

    public init<Buffers: Sequence<VirtqueueBuffer>>(_ buffers: Buffers) {
        for buffer in buffers { append(buffer) }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    public subscript(position: Int) -> VirtqueueBuffer {
        precondition(position >= 0 && position < count, "BufferList index out of range")
        if let spilled { return spilled[position] }
        return inline[position]
    }

    public mutating func append(_ buffer: VirtqueueBuffer) {
        if spilled != nil {
            spilled!.append(buffer)
        } else if count < Self.inlineCapacity {
            inline[count] = buffer
        } else {
            var all = Array(self)
            all.append(buffer)
            spilled = all
        }
        count += 1
    }

    /// Drops the last buffer (there must be one).
    public mutating func removeLast() {
        precondition(count > 0, "removeLast on an empty BufferList")
        if spilled != nil { spilled!.removeLast() }
        count -= 1
    }

    public static func == (lhs: BufferList, rhs: BufferList) -> Bool { lhs.elementsEqual(rhs) }
}
