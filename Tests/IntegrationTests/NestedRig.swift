import Foundation

/// Runs a shell script inside the nested rig's L2 and splits its output into sections printed as
/// `=== begin NAME` ... `=== end NAME status=N`.
enum NestedRig {
    struct Section {
        let output: String
        let status: Int32

        /// The rest of the first line that starts with `key` and a space.
        func value(_ key: String) -> String? {
            output.components(separatedBy: "\n").first { $0.hasPrefix(key + " ") }.map { String($0.dropFirst(key.count + 1)) }
        }

        /// The first line that is a JSON object (an hvctl --stats-json document), parsed.
        func jsonDocument() throws -> [String: Any]? {
            guard let json = output.components(separatedBy: "\n").first(where: { $0.hasPrefix("{") }) else { return nil }
            return try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        }
    }

    /// Runs `script` in the rig. TCG's emulated SVM now and then makes an L3 guest triple-fault
    /// early in boot, or L2 itself stalls (seen across sessions; L2 has also stalled with QEMU as
    /// the L3 hypervisor): a run that ends with a triple fault is repeated once, one whose rig
    /// failed up to twice, each saying so in the test log with the end of what it printed.
    /// `files` are copied into L2 (host path: L2 path).
    static func run(script: String, files: [String: String] = [:], timeoutInSeconds: Int = 500) throws -> (sections: [String: Section], output: String) {
        let scriptURL = FileManager.default.temporaryDirectory.appendingPathComponent("nested-\(UUID().uuidString).sh")
        try script.write(to: scriptURL, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: scriptURL) }
        let adds = files.sorted { $0.key < $1.key }.flatMap { ["--add", "\($0.key):\($0.value)"] }
        let runOnce = { try Toolchain.run(Toolchain.rig, ["--timeout", "\(timeoutInSeconds)", "--add", "\(scriptURL.path):/test.sh"] + adds + ["--", "sh", "/test.sh"]) }
        var result = try runOnce()
        // An L3 triple fault is repeated once; a stalled or failed rig (nested/run's own watchdog
        // ends a stalled L2 within 90 s) up to twice.
        var repeatsLeft = 2
        while repeatsLeft > 0, result.status != 0 || (repeatsLeft == 2 && result.stdout.contains("triple-faulted")) {
            repeatsLeft -= 1
            print("nested rig: repeating a run that \(result.status != 0 ? "ended with status \(result.status)" : "had an L3 triple fault"); it printed:\n\(result.stdout.suffix(3000))\n\(result.stderr.suffix(1000))")
            result = try runOnce()
        }
        guard result.status == 0 else {
            throw NSError(domain: "nested-rig", code: Int(result.status),
                          userInfo: [NSLocalizedDescriptionKey: "rig exited \(result.status)\n\(result.stdout.suffix(5000))\n\(result.stderr.suffix(3000))"])
        }
        var sections: [String: Section] = [:]
        var current: (name: String, lines: [String])?
        // Guest lines end in "\r\r\n" after two ttys; Swift treats "\r\n" as one Character, so drop "\r" first.
        let text = result.stdout.replacingOccurrences(of: "\r", with: "")
        for line in text.components(separatedBy: "\n") {
            if line.hasPrefix("=== begin ") {
                current = (String(line.dropFirst(10)), [])
            } else if line.hasPrefix("=== end "), let open = current, let range = line.range(of: " status=") {
                sections[open.name] = Section(output: open.lines.joined(separator: "\n"), status: Int32(line[range.upperBound...]) ?? -1)
                current = nil
            } else {
                current?.lines.append(line)
            }
        }
        return (sections, result.stdout + result.stderr)
    }
}
