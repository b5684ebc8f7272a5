import Glibc

/// Drops the code pages that built the VMs from hvctl's resident set. Its code and read-only data
/// are mapped from files (the executable, with a static Swift runtime: ~14 MiB of text, and a few
/// shared libraries), and the kernel maps 64 KiB of cached file pages around each fault
/// (fault-around; `MADV_RANDOM` does not turn it off, measured on 6.18), so the option parsing,
/// configuration decoding and VM building scattered over that text leave ~2.7 MiB resident that
/// never runs again, and each page that does run afterwards drags 15 cached neighbours in with it.
/// The pages of the mappings hvctl never wrote are clean page cache, so nothing is lost:
/// - `MADV_PAGEOUT` reclaims the ones no other process maps (the executable's own text, unless
///   another hvctl runs), and `MADV_RANDOM` stops readahead on those mappings, so a page that runs
///   later is read back alone and the resident set is the code that actually runs (measured:
///   hvctl's text 5.9 MiB → 2.8 MiB with one VM serving the API; a run of 1,000 requests took
///   the same time within noise, 708-726 ms against 718-753 ms).
/// - `MADV_DONTNEED` unmaps the rest (pages shared with other processes: libc, a second hvctl);
///   those stay cached and fault back with their neighbours.
/// benchmarks/memory.sh measures the effect.
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
            let length = Int(mapping.end - mapping.start)
            // Each is advice: on a kernel without MADV_PAGEOUT (before 5.4) the pages stay cached.
            _ = madvise(address, length, MADV_RANDOM)
            _ = madvise(address, length, MADV_PAGEOUT)
            _ = madvise(address, length, MADV_DONTNEED)
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
