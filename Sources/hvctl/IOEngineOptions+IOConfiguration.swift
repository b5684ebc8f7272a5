import Hypervisor
import Logging
import VirtioDevices
import VMM

extension IOEngineOptions {
    /// The runtime's I/O configuration these options describe; with --side-cores auto, each
    /// resize the I/O core manager makes is a notice in the log.
    func ioConfiguration() throws -> IOConfiguration {
        let redirection = interruptRedirection.mode(postedInterrupts: HostReport.postedInterrupts != nil)
        let mode: PollSchedule.Mode
        switch ioMode {
        case .notify: return IOConfiguration(engine: .notify, interruptRedirection: redirection)
        case .poll: mode = .poll
        case .hybrid: mode = .hybrid
        }
        var configuration = SideCoreConfiguration(
            mode: mode, count: sideCores ?? Self.defaultSideCores,
            pollMaxNanoseconds: UInt64(pollMaxMicroseconds ?? Self.defaultPollMaxMicroseconds) * 1_000)
        configuration.maxCount =
            sideCoresMax
            ?? (sideCoreCount == .automatic
                ? Self.defaultAutomaticMaximum(minimum: configuration.count) : configuration.count)
        if mode == .hybrid && pollMaxMicroseconds == nil {
            configuration.pollWindowCeiling = UInt64(Self.selfSizedPollWindowCeilingMicroseconds) * 1_000
        }
        if interruptCoalescing == .off { configuration.coalescing = nil }
        switch try parsedSideCoreCPUs() {
        case nil: break
        case let cpus? where cpus.isEmpty: configuration.placement = .unpinned
        case let cpus?: configuration.placement = .cpus(cpus)
        }
        var io = IOConfiguration(engine: .sideCores(configuration), interruptRedirection: redirection)
        if sideCoreCount == .automatic {
            // A poll-mode core never sleeps; its window for the 0 <-> 1 decision is the hybrid default.
            let windowMicroseconds =
                ioMode == .hybrid
                ? pollMaxMicroseconds ?? Self.defaultPollMaxMicroseconds : Self.defaultPollMaxMicroseconds
            var policy = SideCoreCountPolicy(
                minimum: sideCores ?? 1, maximum: configuration.maxCount,
                pollWindowSeconds: Double(windowMicroseconds) / 1e6)
            policy.pickupDelayTarget = Double(pickupDelayMicroseconds ?? Self.defaultPickupDelayMicroseconds) / 1e6
            io.coreCountPolicy = policy
            io.onResize = { resize in logger.notice("side cores resized", metadata: Self.fields(of: resize)) }
        }
        return io
    }

    /// An iocm resize as log fields: the counts, what it saw, and what moved.
    static func fields(of resize: IOCoreManager.Resize) -> Logger.Metadata {
        // Measured rates and shares as whole numbers; one that is not finite is shown as "?", not a trap.
        func whole(_ value: Double) -> String { Int(exactly: value.rounded()).map(String.init) ?? "?" }
        let busy = resize.sample.busyShares.map { "\(whole($0 * 100))%" }.joined(separator: ",")
        let pickup = resize.sample.pickupDelays.map { whole($0 * 1e6) }.joined(separator: ",")
        var fields: Logger.Metadata = [
            "source": "iocm", "from": "\(resize.from)", "to": "\(resize.to)",
            "requests_per_second": "\(whole(resize.sample.requestRate.rounded(.down)))", "busy": "[\(busy)]",
            "pickup_us": "[\(pickup)]",
        ]
        if let error = resize.error { fields["error"] = "\(error)" } else { fields["queues_moved"] = "\(resize.moves)" }
        return fields
    }
}
