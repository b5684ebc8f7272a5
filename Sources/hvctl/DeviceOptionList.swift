import ArgumentParser

/// A device option's value, `key=value[,key=value]...` (cloud-hypervisor style): split into pairs
/// and checked for form and for a key given twice, then taken by the device's parser key by key;
/// `finish` refuses any key no parser took. Every error is one line naming the option, the
/// argument and the key.
struct DeviceOptionList {
    let option: String
    let argument: String
    private var values: [String: String] = [:]
    /// Keys in the order given, so the first unknown one is named.
    private var keys: [String] = []

    init(option: String, argument: String) throws {
        self.option = option
        self.argument = argument
        for pair in argument.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw error("'\(pair)' is not key=value")
            }
            guard values.updateValue(parts[1], forKey: parts[0]) == nil else {
                throw error("\(parts[0]) is given twice")
            }
            keys.append(parts[0])
        }
    }

    func error(_ problem: String) -> ValidationError { ValidationError("\(option) \(argument): \(problem)") }

    /// The value of `key`, if given; the key counts as known from now on.
    mutating func take(_ key: String) -> String? { values.removeValue(forKey: key) }

    /// The value of `key` or of `alias`, another spelling of it (cloud-hypervisor's); both is an error.
    mutating func take(_ key: String, alias: String) throws -> String? {
        let value = take(key), aliased = take(alias)
        guard value == nil || aliased == nil else {
            throw error("\(key) and \(alias) are the same option, given twice")
        }
        return value ?? aliased
    }

    /// `key` (or its `alias`) as a whole number within `range`.
    mutating func take(_ key: String, alias: String? = nil, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = try alias.map({ try take(key, alias: $0) }) ?? take(key) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw error("\(key) takes \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// `key` as on/off (true/false too).
    mutating func takeSwitch(_ key: String) throws -> Bool? {
        guard let text = take(key) else { return nil }
        guard let value = ["on": true, "true": true, "off": false, "false": false][text] else {
            throw error("\(key) takes on or off")
        }
        return value
    }

    /// `queue_size`: a whole number the device then checks (a power of two within its limit).
    mutating func takeQueueSize() throws -> UInt16? {
        try take("queue_size", in: 1...Int(UInt16.max)).map { UInt16($0) }
    }

    /// Refuses the first key no parser took.
    func finish() throws {
        if let unknown = keys.first(where: { values[$0] != nil }) { throw error("unknown key '\(unknown)'") }
    }
}
