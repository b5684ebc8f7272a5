/// The Linux x86 boot protocol's setup header and zero page (Documentation/arch/x86/boot.rst).
enum BzImage {
    static let minimumVersion: UInt16 = 0x020C  // 2.12: xloadflags and the 64-bit entry point
    static let entryOffset: UInt64 = 0x200  // startup_64 relative to the protected-mode kernel

    static func matches(_ header: [UInt8]) -> Bool {
        header.count >= 0x270 && header[0x1FE] == 0x55 && header[0x1FF] == 0xAA
            && header[0x202..<0x206].elementsEqual("HdrS".utf8)
    }

    static func load(
        _ kernel: BootFile, header: [UInt8], initrd: BootFile?, commandLine: String,
        memory: GuestMemory, rsdpAddress: UInt64
    ) throws -> LoadedKernel {
        func u16(_ offset: Int) -> UInt16 { LittleEndian.load(UInt16.self, from: header, at: offset) }
        func u32(_ offset: Int) -> UInt32 { LittleEndian.load(UInt32.self, from: header, at: offset) }

        let version = u16(0x206)
        let xloadflags = u16(0x236)
        if version < minimumVersion || xloadflags & 0x1 == 0 {  // XLF_KERNEL_64
            throw BootError.bootProtocolTooOld(path: kernel.path, version: version)
        }
        let setupSectors = UInt64(header[0x1F1] == 0 ? 4 : header[0x1F1])
        let kernelOffset = (setupSectors + 1) * 512
        guard kernel.sizeInBytes > kernelOffset else { throw BootError.notAKernel(path: kernel.path) }
        let kernelSize = kernel.sizeInBytes - kernelOffset
        let loadAddress = X86Layout.kernelLoadAddress
        // init_size is what the kernel needs in place to decompress itself.
        let kernelEnd = loadAddress + max(kernelSize, UInt64(u32(0x260)))
        try LinuxLoader.checkFits(kernel, start: loadAddress, end: kernelEnd, memory: memory)
        try kernel.copy(to: memory, at: loadAddress, offset: kernelOffset, length: kernelSize)

        try LinuxLoader.writeCommandLine(commandLine, limit: Int(u32(0x238)), memory: memory)

        let zeroPage = X86Layout.zeroPageAddress
        try memory.zero(at: zeroPage, length: 0x1000)
        // The setup header runs from 0x1F1 to 0x202 plus the jump offset at 0x201.
        let headerEnd = min(0x202 + Int(header[0x201]), header.count)
        try memory.write(Array(header[0x1F1..<headerEnd]), at: zeroPage + 0x1F1)
        try memory.store(UInt8(0xFF), at: zeroPage + 0x210)  // type_of_loader: undefined
        try memory.store(header[0x211] | 0x81, at: zeroPage + 0x211)  // LOADED_HIGH | CAN_USE_HEAP
        try memory.store(UInt16(0xFE00), at: zeroPage + 0x224)  // heap_end_ptr
        try memory.store(UInt32(X86Layout.commandLineAddress), at: zeroPage + 0x228)
        try memory.store(rsdpAddress, at: zeroPage + 0x070)

        var initrdAddress: UInt64?
        if let initrd {
            let limit = UInt64(u32(0x22C)) + 1  // initrd_addr_max is the highest byte address
            let address = try LinuxLoader.placeInitrd(initrd, below: limit, kernelEnd: kernelEnd, memory: memory)
            try memory.store(UInt32(address), at: zeroPage + 0x218)
            try memory.store(UInt32(initrd.sizeInBytes), at: zeroPage + 0x21C)
            initrdAddress = address
        }

        let e820 = E820Entry.map(for: memory)
        try memory.store(UInt8(e820.count), at: zeroPage + 0x1E8)
        for (index, entry) in e820.enumerated() {
            let base = zeroPage + 0x2D0 + UInt64(index * 20)
            try memory.store(entry.address, at: base)
            try memory.store(entry.sizeInBytes, at: base + 8)
            try memory.store(entry.kind.rawValue, at: base + 16)
        }
        return LoadedKernel(
            format: .bzImage, entryAddress: loadAddress + entryOffset,
            bootParametersAddress: zeroPage, initrdAddress: initrdAddress)
    }
}
