/// An uncompressed ELF vmlinux entered through its PVH note (Xen's `hvm_start_info` ABI).
enum PVHImage {
    static let startInfoMagic: UInt32 = 0x336E_C578
    static let physicalEntryNoteType: UInt32 = 18  // XEN_ELFNOTE_PHYS32_ENTRY
    static let maximumProgramHeaders = 64
    static let maximumNoteBytes = 1 << 16

    static func matches(_ header: [UInt8]) -> Bool {
        header.count >= 64 && header[0..<4].elementsEqual([0x7F, 0x45, 0x4C, 0x46])
            && header[4] == 2 && header[5] == 1  // ELFCLASS64, little-endian
            && header[18] == 62 && header[19] == 0  // EM_X86_64
    }

    static func load(
        _ kernel: BootFile, header: [UInt8], initrd: BootFile?, commandLine: String,
        memory: GuestMemory, rsdpAddress: UInt64
    ) throws -> LoadedKernel {
        let programHeaderOffset = LittleEndian.load(UInt64.self, from: header, at: 0x20)
        let programHeaderSize = Int(LittleEndian.load(UInt16.self, from: header, at: 0x36))
        let programHeaderCount = Int(LittleEndian.load(UInt16.self, from: header, at: 0x38))
        guard programHeaderSize >= 56, programHeaderCount <= maximumProgramHeaders else {
            throw BootError.notAKernel(path: kernel.path)
        }
        let table = try kernel.read(at: programHeaderOffset, count: programHeaderSize * programHeaderCount)
        guard table.count == programHeaderSize * programHeaderCount else {
            throw BootError.notAKernel(path: kernel.path)
        }

        var entry: UInt64?
        var kernelEnd: UInt64 = 0
        for index in 0..<programHeaderCount {
            let base = index * programHeaderSize
            let type = LittleEndian.load(UInt32.self, from: table, at: base)
            let fileOffset = LittleEndian.load(UInt64.self, from: table, at: base + 8)
            let physicalAddress = LittleEndian.load(UInt64.self, from: table, at: base + 24)
            let fileSize = LittleEndian.load(UInt64.self, from: table, at: base + 32)
            let memorySize = LittleEndian.load(UInt64.self, from: table, at: base + 40)
            let (fileEnd, overflow) = fileOffset.addingReportingOverflow(fileSize)
            guard !overflow, fileEnd <= kernel.sizeInBytes, fileSize <= memorySize else {
                throw BootError.notAKernel(path: kernel.path)
            }
            switch type {
            case 1:  // PT_LOAD
                let (end, overflow) = physicalAddress.addingReportingOverflow(memorySize)
                if overflow { throw BootError.notAKernel(path: kernel.path) }
                try LinuxLoader.checkFits(kernel, start: physicalAddress, end: end, memory: memory)
                try kernel.copy(to: memory, at: physicalAddress, offset: fileOffset, length: fileSize)
                try memory.zero(at: physicalAddress + fileSize, length: memorySize - fileSize)
                kernelEnd = max(kernelEnd, end)
            case 4 where fileSize <= UInt64(maximumNoteBytes):  // PT_NOTE
                let notes = try kernel.read(at: fileOffset, count: Int(fileSize))
                entry = entry ?? physicalEntry(in: notes)
            default:
                break
            }
        }
        guard let entry else { throw BootError.noPVHEntry(path: kernel.path) }

        try LinuxLoader.writeCommandLine(commandLine, limit: LinuxLoader.pvhCommandLineLimit, memory: memory)
        let startInfo = X86Layout.pvhStartInfoAddress
        try memory.zero(at: startInfo, length: 0x1000)
        var initrdAddress: UInt64?
        if let initrd {
            let address = try LinuxLoader.placeInitrd(
                initrd, below: X86Layout.mmioHoleStart, kernelEnd: kernelEnd, memory: memory)
            let module = X86Layout.pvhModuleListAddress
            try memory.store(address, at: module)
            try memory.store(initrd.sizeInBytes, at: module + 8)
            try memory.store(UInt32(1), at: startInfo + 12)  // nr_modules
            try memory.store(module, at: startInfo + 16)
            initrdAddress = address
        }
        let memoryMap = E820Entry.map(for: memory)
        for (index, region) in memoryMap.enumerated() {
            let base = X86Layout.pvhMemoryMapAddress + UInt64(index * 24)
            try memory.store(region.address, at: base)
            try memory.store(region.sizeInBytes, at: base + 8)
            try memory.store(region.kind.rawValue, at: base + 16)
        }
        try memory.store(startInfoMagic, at: startInfo)
        try memory.store(UInt32(1), at: startInfo + 4)  // version 1: has the memory map
        try memory.store(X86Layout.commandLineAddress, at: startInfo + 24)
        try memory.store(rsdpAddress, at: startInfo + 32)
        try memory.store(X86Layout.pvhMemoryMapAddress, at: startInfo + 40)
        try memory.store(UInt32(memoryMap.count), at: startInfo + 48)
        return LoadedKernel(
            format: .pvh, entryAddress: entry, bootParametersAddress: startInfo, initrdAddress: initrdAddress)
    }

    /// Walks ELF notes (4-byte aligned name and descriptor) for Xen's PHYS32_ENTRY; bounded by `notes.count`.
    static func physicalEntry(in notes: [UInt8]) -> UInt64? {
        var offset = 0
        while offset + 12 <= notes.count {
            let nameSize = Int(LittleEndian.load(UInt32.self, from: notes, at: offset))
            let descriptorSize = Int(LittleEndian.load(UInt32.self, from: notes, at: offset + 4))
            let type = LittleEndian.load(UInt32.self, from: notes, at: offset + 8)
            let nameStart = offset + 12
            let descriptorStart = nameStart + ((nameSize + 3) & ~3)
            let next = descriptorStart + ((descriptorSize + 3) & ~3)
            guard nameSize <= notes.count, descriptorSize <= notes.count, next <= notes.count else { return nil }
            if type == physicalEntryNoteType, notes[nameStart..<(nameStart + nameSize)].elementsEqual("Xen\0".utf8) {
                if descriptorSize == 4 {
                    return UInt64(LittleEndian.load(UInt32.self, from: notes, at: descriptorStart))
                }
                if descriptorSize == 8 { return LittleEndian.load(UInt64.self, from: notes, at: descriptorStart) }
            }
            offset = next
        }
        return nil
    }
}
