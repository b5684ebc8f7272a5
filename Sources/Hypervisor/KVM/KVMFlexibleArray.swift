/// A KVM structure that ends in a flexible array (`kvm_cpuid2`, `kvm_irq_routing`): the header
/// and room for `capacity` elements in one zeroed allocation, freed with this value.
final class KVMFlexibleArray<Header, Element> {
    let header: UnsafeMutablePointer<Header>
    let capacity: Int
    private let raw: UnsafeMutableRawPointer
    private let elementsStart: UnsafeMutablePointer<Element>

    /// `count` is the header's element count field, set to `capacity`; `elements` fill the start.
    init(capacity: Int, count: WritableKeyPath<Header, UInt32>, elements: [Element] = []) {
        precondition(elements.count <= capacity && MemoryLayout<Header>.size % MemoryLayout<Element>.alignment == 0)
        let bytes = MemoryLayout<Header>.size + capacity * MemoryLayout<Element>.stride
        raw = UnsafeMutableRawPointer.allocate(
            byteCount: bytes, alignment: max(MemoryLayout<Header>.alignment, MemoryLayout<Element>.alignment))
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        header = raw.bindMemory(to: Header.self, capacity: 1)
        // In bounds: the allocation holds the header and then `capacity` elements.
        elementsStart = (raw + MemoryLayout<Header>.size).bindMemory(to: Element.self, capacity: capacity)
        self.capacity = capacity
        header.pointee[keyPath: count] = UInt32(capacity)
        for (index, element) in elements.enumerated() { elementsStart[index] = element }
    }

    /// The first `count` elements (what KVM filled in), at most `capacity`.
    func elements(count: Int) -> [Element] {
        Array(UnsafeBufferPointer(start: elementsStart, count: min(max(count, 0), capacity)))
    }

    deinit { raw.deallocate() }
}
