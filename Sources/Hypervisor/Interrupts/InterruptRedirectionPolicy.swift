/// Where an interrupt goes under ES2's interrupt redirection: only a message that lets the
/// platform pick any CPU of its destination (lowest priority, or the redirection hint) may be
/// moved, and only to a vCPU inside that destination, because a guest allocates a vector only on
/// the CPUs it named (Linux gives each vector one CPU and never programs such a message, so its
/// interrupts are never moved). Within that set, a vCPU that is not running (halted or
/// descheduled) should not be the one to take it while another one is running.
public enum InterruptRedirectionPolicy {
    /// The vCPU index to deliver `message` to, or nil to keep the guest's route (KVM's own
    /// choice among the destination). `apics[i]` is vCPU i's local APIC (nil: not known yet),
    /// `running[i]` whether it runs; `current` is the vCPU the route targets now, kept while it
    /// qualifies so routes do not flap; `spread` (the GSI) spreads routes over running vCPUs.
    public static func target(
        for message: MSIMessage, apics: [LocalAPICIdentity?], running: [Bool], current: Int?, spread: Int
    ) -> Int? {
        guard message.allowsAnyDestinationCPU, apics.count == running.count else { return nil }
        let candidates = apics.indices.filter { apics[$0]?.isDestination(of: message) == true }
        guard candidates.count >= 2 else { return nil }
        let runningCandidates = candidates.filter { running[$0] }
        // All running: KVM's choice is as good. None running: KVM wakes the one it picks.
        guard !runningCandidates.isEmpty, runningCandidates.count < candidates.count else { return nil }
        if let current, runningCandidates.contains(current) { return current }
        return runningCandidates[abs(spread) % runningCandidates.count]
    }
}
