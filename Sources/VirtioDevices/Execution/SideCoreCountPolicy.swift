/// IOcm's decision (Gordon et al., SYSTOR 2016) without threads or clocks, so tests can drive
/// it: from each active side core's busy share over the last interval (time in polling rounds
/// that found work, over wall time), whether to add a core, drop one, or keep the count.
///
/// Grow when the active cores are busy on average above `growAbove`; shrink when all their busy
/// work would fit in one core fewer at under `shrinkBelow` each. Either must hold for `patience`
/// samples in a row (hysteresis), and the count stays within `minimum...maximum`.
public struct SideCoreCountPolicy: Equatable, Sendable {
    public let minimum: Int
    public let maximum: Int
    public var growAbove = 0.75
    public var shrinkBelow = 0.35
    public var patience = 3
    private var samplesAbove = 0
    private var samplesBelow = 0

    public init(minimum: Int, maximum: Int) {
        self.minimum = minimum
        self.maximum = max(minimum, maximum)
    }

    /// The count to use after this sample, given the current `active` count.
    public mutating func decide(active: Int, busyShares: [Double]) -> Int {
        let total = busyShares.reduce(0, +)
        let average = busyShares.isEmpty ? 0 : total / Double(busyShares.count)
        samplesAbove = average > growAbove && active < maximum ? samplesAbove + 1 : 0
        samplesBelow = active > minimum && total < shrinkBelow * Double(active - 1) ? samplesBelow + 1 : 0
        if samplesAbove >= patience {
            samplesAbove = 0
            return active + 1
        }
        if samplesBelow >= patience {
            samplesBelow = 0
            return active - 1
        }
        return max(minimum, min(maximum, active))
    }
}
