import Glibc

/// Drops the code pages that built the VMs from hvctl's resident set. Its code and read-only data
/// are mapped from files (the executable, with a static Swift runtime: ~10 MiB of text, and a few
/// shared libraries), and the kernel maps the cached file pages around each fault with it (64 KiB
/// windows), so the option parsing, configuration decoding and VM building scattered over that
/// text would stay resident though they never run again. Dropping the pages of the mappings hvctl
/// never wrote loses nothing (they are clean page-cache pages); what runs afterwards faults back,
/// and the link (Package.swift, linker/) puts that code together so that its windows overlap.
/// benchmarks/memory.sh and APITests measure the effect.
///
/// Tried and dropped (2026-12-05): reclaiming those pages from the cache (`MADV_PAGEOUT`, then
/// `POSIX_FADV_DONTNEED` on the executable) with readahead off (`MADV_RANDOM`), so that code which
/// runs later comes back a page at a time. On 6.18 a fault in an executable mapping reads ahead
/// regardless of `MADV_RANDOM` (measured: one touch cached 2,343 pages with it, 3 in a non-exec
/// mapping), and the windows map what it brought in.
enum CodeResidency {
    /// One mapping of the process, from /proc/self/smaps.
    private struct Mapping {
        var start: UInt
        var end: UInt
        var writable: Bool
        /// Backed by a file (its path starts with "/"), not anonymous memory or [vdso] and the like.
        var fromFile: Bool
        /// KiB of private copies (relocated or written pages), in RAM and swapped out: those must
        /// never be dropped (a swapped-out copy counts under `Swap:`, not `Anonymous:`).
        var privateCopyKiB = 0
    }

    /// Call once the VMs are built. Other threads may run: a page they need faults back in. Only
    /// read-only file mappings without private copies are dropped here: a written page (relocated
    /// data) exists nowhere else, and a writable mapping's pages are `trimUnwrittenData`'s.
    static func trim() {
        for mapping in mappings() where mapping.fromFile && !mapping.writable && mapping.privateCopyKiB == 0 {
            guard let address = UnsafeMutableRawPointer(bitPattern: mapping.start) else { continue }
            _ = madvise(address, Int(mapping.end - mapping.start), MADV_DONTNEED)
        }
    }

    /// Call while hvctl has a single thread: drops the pages of writable file mappings that were
    /// never written, so are still the file's own (the toolchain's Swift objects mark their
    /// `.rodata` writable, so the executable's 1.8 MiB of it maps writable; building the VMs
    /// leaves ~1 MiB of it resident). A page that was written is a private copy and is kept. With
    /// one thread nothing else can write a page between the check and the drop (that write would
    /// be lost; this thread touches only its heap and stack meanwhile), so with more threads this
    /// does nothing. Returns the KiB dropped, nil when it did nothing.
    static func trimUnwrittenData() -> Int? {
        guard threadCount() == 1 else { return nil }
        return dropUnwrittenPages { _ in true }
    }

    /// Drops the pages still the file's own in the writable file mappings whose address range
    /// `select` picks; the KiB dropped. The caller makes sure nothing writes to them meanwhile.
    static func dropUnwrittenPages(select: (Range<UInt>) -> Bool) -> Int {
        let pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        guard pagemap >= 0 else { return 0 }
        defer { close(pagemap) }
        let pageSize = UInt(sysconf(Int32(_SC_PAGESIZE)))
        var droppedPages = 0
        for mapping in mappings() where mapping.fromFile && mapping.writable && select(mapping.start..<mapping.end) {
            let count = Int((mapping.end - mapping.start) / pageSize)
            var entries = [UInt64](repeating: 0, count: count)
            let wanted = count * MemoryLayout<UInt64>.size
            let read = entries.withUnsafeMutableBytes {
                pread(pagemap, $0.baseAddress, wanted, off_t(mapping.start / pageSize) * 8)
            }
            guard read == wanted else { continue }
            // Runs of present pages that are still the file's (bit 63 present, bit 61 file page).
            var index = 0
            while index < count {
                guard Self.isUnwrittenFilePage(entries[index]) else {
                    index += 1
                    continue
                }
                var end = index + 1
                while end < count, Self.isUnwrittenFilePage(entries[end]) { end += 1 }
                if let address = UnsafeMutableRawPointer(bitPattern: mapping.start + UInt(index) * pageSize),
                    madvise(address, (end - index) * Int(pageSize), MADV_DONTNEED) == 0
                {
                    droppedPages += end - index
                }
                index = end
            }
        }
        return droppedPages * Int(pageSize) / 1024
    }

    private static func isUnwrittenFilePage(_ entry: UInt64) -> Bool {
        entry & (1 << 63) != 0 && entry & (1 << 61) != 0
    }

    /// The threads of this process, from /proc/self/task.
    private static func threadCount() -> Int {
        guard let directory = opendir("/proc/self/task") else { return Int.max }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            if entry.pointee.d_name.0 != CChar(UInt8(ascii: ".")) { count += 1 }
        }
        return count
    }

    /// Every mapping, with its private-copy size.
    private static func mappings() -> [Mapping] {
        guard let file = fopen("/proc/self/smaps", "re") else { return [] }
        defer { fclose(file) }
        var mappings: [Mapping] = []
        var current: Mapping?
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0, let line {
            let fields = String(cString: line).split(separator: " ", omittingEmptySubsequences: true)
            if let header = mappingHeader(fields) {
                if let current { mappings.append(current) }
                current = header
            } else if fields.count >= 2, fields[0] == "Anonymous:" || fields[0] == "Swap:", current != nil {
                current?.privateCopyKiB += Int(fields[1]) ?? Int.max / 2
            }
        }
        if let current { mappings.append(current) }
        return mappings
    }

    /// A mapping's first line, `start-end perms offset dev inode [path]`; nil for any other line.
    private static func mappingHeader(_ fields: [Substring]) -> Mapping? {
        guard fields.count >= 5 else { return nil }
        let bounds = fields[0].split(separator: "-")
        guard bounds.count == 2, let start = UInt(bounds[0], radix: 16), let end = UInt(bounds[1], radix: 16),
            end > start
        else { return nil }
        let fromFile = fields.count >= 6 && fields[5].hasPrefix("/")
        return Mapping(start: start, end: end, writable: fields[1].dropFirst().first == "w", fromFile: fromFile)
    }
}
