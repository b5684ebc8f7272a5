import ArgumentParser
import Glibc

/// `--memory`: MiB as a plain number, or with a suffix (`512M`, `2G`, `262144K`).
struct MemorySize: ExpressibleByArgument, Equatable {
    let mebibytes: Int

    init?(argument: String) {
        let units: [Character: (multiplier: Int, divisor: Int)] = ["K": (1, 1024), "M": (1, 1), "G": (1024, 1)]
        var digits = Substring(argument)
        var unit = (multiplier: 1, divisor: 1)
        if let last = argument.last?.uppercased().first, let suffix = units[last] {
            unit = suffix
            digits = digits.dropLast()
        }
        guard let count = Int(digits), count >= 0 else { return nil }
        let (product, overflow) = count.multipliedReportingOverflow(by: unit.multiplier)
        guard !overflow, product % unit.divisor == 0 else { return nil }
        mebibytes = product / unit.divisor
    }

    static var defaultValueDescription: String { "MiB, or with a K, M or G suffix" }

    /// The host's RAM in MiB (MemTotal in /proc/meminfo), nil when it cannot be read.
    static var hostMebibytes: Int? {
        guard let file = fopen("/proc/meminfo", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard text.hasPrefix("MemTotal:") else { continue }
            return text.split(separator: " ").dropFirst().first.flatMap { Int($0) }.map { $0 / 1024 }
        }
        return nil
    }
}
