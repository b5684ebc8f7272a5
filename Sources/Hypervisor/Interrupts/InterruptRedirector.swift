import Glibc
import Logging
import Synchronization

/// Which vCPUs interrupt redirection moves interrupts away from.
public enum InterruptRedirectionMode: String, Sendable {
    case off
    /// Only vCPUs whose threads wait for a host CPU.
    case descheduled
    /// Those and halted vCPUs: ES2's rule, which pays off where a running vCPU takes an interrupt
    /// without an exit (posted interrupts); without them, waking a halted vCPU was measured cheaper.
    case haltedOrDescheduled = "halted-or-descheduled"
}

/// ES2's interrupt redirection, on a thread named `irqredir`: every millisecond while some
/// guest MSI message lets the platform pick among several CPUs, it samples which vCPUs run and
/// moves such a message's route off a halted or descheduled vCPU to a running one in the same
/// destination (`InterruptRedirectionPolicy`), and back to the guest's route once every vCPU
/// there runs again. With no such message it sleeps until the guest reprograms one.
public final class InterruptRedirector: Sendable {
    public static let intervalNanoseconds: UInt64 = 1_000_000
    /// How often the vCPUs' local APICs are read again while redirection is possible (a guest
    /// may change its logical IDs, or start a CPU, after programming its messages).
    static let readingRefreshNanoseconds: UInt64 = 1_000_000_000

    /// The vCPU a GSI's route was last sent to, for the message it was chosen for.
    private struct Choice {
        let guest: MSIMessage
        let vcpu: Int
    }

    private let router: InterruptRouter
    private let apics: LocalAPICDirectory
    private let requestReadings: @Sendable () -> Void
    private let sampleActivity: @Sendable () -> [VCPUActivitySample]
    private let messageChanges: GuestMessageChanges
    private let stopping = Atomic<Bool>(false)
    private let thread = WorkerThread()
    /// Which vCPUs count as not running.
    public let mode: InterruptRedirectionMode

    /// Routes moved to a vCPU the VMM chose (a new choice counts again).
    public let retargets = Counter()
    /// Routes given back to the guest's message by the redirector (at exit too).
    public let restores = Counter()
    /// Failed route updates (`KVM_SET_GSI_ROUTING`); the last error is kept.
    public let failures = Counter()
    public let lastFailure = Lock<String?>(nil)
    private static let logger = Logger(label: "sidecore.irqredir")
    /// The VM's name, for log lines.
    private let vmName: String

    /// `messageChanges` is what `router` records the guest's reprogramming in; `requestReadings`
    /// asks each vCPU thread to read its local APIC into `apics` (and kicks it); `sampleActivity`
    /// reports each vCPU's blocking state and run-queue wait.
    public init(
        mode: InterruptRedirectionMode, router: InterruptRouter, messageChanges: GuestMessageChanges,
        apics: LocalAPICDirectory, requestReadings: @escaping @Sendable () -> Void,
        sampleActivity: @escaping @Sendable () -> [VCPUActivitySample], vmName: String
    ) {
        self.mode = mode
        self.vmName = vmName
        self.messageChanges = messageChanges
        self.router = router
        self.apics = apics
        self.requestReadings = requestReadings
        self.sampleActivity = sampleActivity
    }

    public func start() throws {
        try thread.start(name: "irqredir") { [self] in run() }
    }

    /// Stops the thread and gives every route back to the guest's message.
    public func stop() {
        stopping.store(true, ordering: .relaxed)
        messageChanges.wake()
        thread.join()
    }

    private func run() {
        let countsHalts = mode == .haltedOrDescheduled
        var tracker = VCPUActivityTracker(countsHalts: countsHalts)
        var choices: [UInt32: Choice] = [:]
        var readingsAskedAt: UInt64?
        var sampledAt: UInt64?
        var readingsGeneration = UInt64.max
        while !stopping.load(ordering: .relaxed) {
            let movable = router.guestMessages().filter { $0.value.allowsAnyDestinationCPU }
            if movable.isEmpty {
                install([:])
                choices = [:]
                tracker = VCPUActivityTracker(countsHalts: countsHalts)
                sampledAt = nil
                messageChanges.wait(milliseconds: 100)
                continue
            }
            let now = MonotonicClock.now()
            let generation = messageChanges.generation
            if generation != readingsGeneration
                || readingsAskedAt.map({ now - $0 >= Self.readingRefreshNanoseconds }) ?? true
            {
                requestReadings()
                readingsAskedAt = now
                readingsGeneration = generation
            }
            let running = tracker.running(after: sampleActivity(), elapsedNanoseconds: now - (sampledAt ?? now))
            sampledAt = now
            let identities = apics.readings()
            var next: [UInt32: Choice] = [:]
            var redirections: [UInt32: InterruptRouter.Redirection] = [:]
            for (gsi, message) in movable {
                guard
                    let vcpu = InterruptRedirectionPolicy.target(
                        for: message, apics: identities, running: running,
                        current: choices[gsi].flatMap { $0.guest == message ? $0.vcpu : nil },
                        spread: Int(gsi)),
                    let apicID = identities[vcpu]?.apicID, apicID < 0xFF
                else { continue }
                next[gsi] = Choice(guest: message, vcpu: vcpu)
                redirections[gsi] = .init(guest: message, delivered: message.delivered(toPhysicalAPIC: UInt8(apicID)))
            }
            // The router compares with what is installed (a guest rewrite may have ended a
            // redirection since) and updates KVM only on a difference.
            if install(redirections) { choices = next }
            usleep(UInt32(Self.intervalNanoseconds / 1000))
        }
        install([:])
    }

    /// Asks the router for exactly `redirections` and counts what it changed; false if KVM
    /// refused the table.
    @discardableResult
    private func install(_ redirections: [UInt32: InterruptRouter.Redirection]) -> Bool {
        do {
            let changes = try router.setRedirections(redirections)
            retargets.add(UInt64(changes.retargeted))
            restores.add(UInt64(changes.restored))
            if changes.retargeted + changes.restored > 0 {
                // Up to a thousand a second under load: debug, not notice.
                Self.logger.debug(
                    "irq redirection changed",
                    metadata: [
                        "vm": "\(vmName)", "retargeted": "\(changes.retargeted)", "restored": "\(changes.restored)",
                    ])
            }
            return true
        } catch {
            failures.add()
            lastFailure.withLock { $0 = "\(error)" }
            Self.logger.warning(
                "irq redirection: KVM refused the routes", metadata: ["vm": "\(vmName)", "error": "\(error)"])
            return false
        }
    }
}
