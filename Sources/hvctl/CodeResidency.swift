import Glibc

/// Drops the code pages that built the VMs from hvctl's resident set. Its code and read-only data
/// are mapped from files (the executable, with a static Swift runtime: ~14 MiB of text, and a few
/// shared libraries), and the kernel maps 64 KiB of cached file pages around each fault
/// (fault-around), so the option parsing, configuration decoding and VM building scattered over
/// that text leave ~2.7 MiB resident that never runs again. Dropping the pages of the mappings
/// hvctl never wrote loses nothing (they are clean page-cache pages); what runs afterwards faults
/// back. benchmarks/memory.sh measures the effect.
///
/// Tried and dropped (2026-12-05): reclaiming those pages from the cache (`MADV_PAGEOUT`, then
/// `POSIX_FADV_DONTNEED` on the executable) with readahead off (`MADV_RANDOM`), so that code which
/// runs later comes back a page at a time. On 6.18 a fault in an executable mapping reads ahead
/// regardless of `MADV_RANDOM` (measured: one touch cached 2,343 pages with it, 3 in a non-exec
/// mapping), up to the disk's read_ahead_kb (8 MiB here), and fault-around maps what it brought
/// in: the resident set measured 6.8-7.4 MiB only while the cache happened to be cold, 10.4 MiB
/// in a clean-clone CI run.
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
    /// read-only file mappings without private copies are dropped: a written page (relocated data,
    /// anything in a writable mapping) exists nowhere else.
    static func trim() {
        for mapping in mappings() where mapping.fromFile && !mapping.writable && mapping.privateCopyKiB == 0 {
            guard let address = UnsafeMutableRawPointer(bitPattern: mapping.start) else { continue }
            _ = madvise(address, Int(mapping.end - mapping.start), MADV_DONTNEED)
        }
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
