import ArgumentParser
import Hypervisor

/// `--io-mode notify|poll|hybrid`.
enum IOMode: String, ExpressibleByArgument, CaseIterable {
    case notify, poll, hybrid
}

/// `--side-cores N|auto`.
enum SideCoreCount: ExpressibleByArgument, Equatable {
    case fixed(Int)
    case automatic

    init?(argument: String) {
        if argument == "auto" {
            self = .automatic
        } else if let count = Int(argument) {
            self = .fixed(count)
        } else {
            return nil
        }
    }
}

/// An on|off option value.
enum OnOff: String, ExpressibleByArgument, CaseIterable {
    case on, off
}

/// `--irq-redirect on|off|auto`.
enum RedirectSetting: String, ExpressibleByArgument, CaseIterable {
    case on, off, auto

    /// auto: away from halted vCPUs too only where posted interrupts let a running vCPU take an
    /// interrupt without an exit (benchmarks/redirect.sh on a host without them: waking the
    /// halted vCPU was faster; moving off descheduled vCPUs won).
    func mode(postedInterrupts: Bool) -> InterruptRedirectionMode {
        switch self {
        case .on: return .haltedOrDescheduled
        case .off: return .off
        case .auto: return postedInterrupts ? .haltedOrDescheduled : .descheduled
        }
    }
}
