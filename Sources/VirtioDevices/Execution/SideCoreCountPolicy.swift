/// IOcm's decision (Gordon et al., SYSTOR 2016) without threads or clocks, so tests can drive
/// it: from what the engine did over the last interval, whether to add a side core, drop one, or
/// keep the count.
///
/// Between one core and more, the inputs are each active core's busy share (time in polling rounds
/// that found work, over wall time) and its pickup delay (the mean length of those rounds: a
/// request published during a round waits up to that long before its queue is polled again, the
/// latency a core count can change): grow when the active cores are busy on average above
/// `growAbove`, or when one's pickup delay exceeds `pickupDelayTarget` while its rounds are shared
/// by several busy handlers (on average at least `sharedRoundHandlers`: one handler's own service
/// time is no reason to add a core, which could not split it) and the queues are not so quiet
/// that they should go back to notify threads; shrink when all their busy work would fit in one
/// core fewer at under `shrinkBelow` each and their rounds, merged onto one core fewer, would
/// still take under half the target. Between none (notify threads) and one, the input is the
/// request rate: a side core pays off once requests come closer together than its poll window,
/// since then it catches the next request before it would sleep and the guest's kick (a VM exit)
/// is saved; so grow when rate × window reaches 1, and go back to notify threads when it falls
/// under `notifyBelow`. Either direction must hold for `patience` samples in a row (hysteresis), and
/// the count stays within `minimum...maximum`.
public struct SideCoreCountPolicy: Equatable, Sendable {
    /// One interval's measurements.
    public struct Sample: Equatable, Sendable {
        /// Busy share of each active side core.
        public var busyShares: [Double]
        /// Requests per second over every queue.
        public var requestRate: Double
        /// Mean length in seconds of each active core's rounds that found work (0: none did).
        public var pickupDelays: [Double]
        /// How many handlers found work in each of those rounds, on average, per active core.
        public var handlersPerBusyRound: [Double]
        public init(
            busyShares: [Double], requestRate: Double, pickupDelays: [Double] = [], handlersPerBusyRound: [Double] = []
        ) {
            self.busyShares = busyShares
            self.requestRate = requestRate
            self.pickupDelays = pickupDelays
            self.handlersPerBusyRound = handlersPerBusyRound
        }
    }

    public let minimum: Int
    public let maximum: Int
    /// A side core's poll window in seconds (hybrid: `--poll-max-us`), for the 0 ↔ 1 decision.
    public let pollWindowSeconds: Double
    public var growAbove = 0.75
    public var shrinkBelow = 0.35
    public var notifyBelow = 0.25
    /// Longest pickup delay tolerated before another core is added, in seconds (`--side-cores-latency-us`).
    public var pickupDelayTarget = 100e-6
    /// Busy handlers a slow core's rounds must average before its pickup delay counts.
    public var sharedRoundHandlers = 1.5
    public var patience = 3
    private var samplesAbove = 0
    private var samplesBelow = 0

    public init(minimum: Int, maximum: Int, pollWindowSeconds: Double) {
        self.minimum = max(0, minimum)
        self.maximum = max(self.minimum, maximum)
        self.pollWindowSeconds = pollWindowSeconds
    }

    /// The count to use after this sample, given the current `active` count.
    public mutating func decide(active: Int, sample: Sample) -> Int {
        let (grow, shrink): (Bool, Bool)
        let requestsPerWindow = sample.requestRate * pollWindowSeconds
        // A core whose rounds are long because several handlers have work in them: another core splits them.
        let crowded = sample.pickupDelays.indices.contains { core in
            sample.pickupDelays[core] > pickupDelayTarget
                && (sample.handlersPerBusyRound.indices.contains(core) ? sample.handlersPerBusyRound[core] : 0)
                    >= sharedRoundHandlers
        }
        switch active {
        case 0:
            (grow, shrink) = (requestsPerWindow >= 1, false)
        case 1:
            let average = sample.busyShares.first ?? 0
            let quiet = requestsPerWindow < notifyBelow
            (grow, shrink) = (average > growAbove || (crowded && !quiet), quiet)
        default:
            let total = sample.busyShares.reduce(0, +)
            let average = sample.busyShares.isEmpty ? 0 : total / Double(sample.busyShares.count)
            let mergedPickup = sample.pickupDelays.reduce(0, +) / Double(active - 1)
            (grow, shrink) = (
                average > growAbove || crowded,
                total < shrinkBelow * Double(active - 1) && mergedPickup < pickupDelayTarget / 2
            )
        }
        samplesAbove = grow && active < maximum ? samplesAbove + 1 : 0
        samplesBelow = shrink && active > minimum ? samplesBelow + 1 : 0
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
