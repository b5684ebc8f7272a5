import Dispatch
import Glibc
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
public final class InterruptRedirector: @unchecked Sendable {
    public static let intervalNanoseconds: UInt64 = 1_000_000
    /// How often the vCPUs' local APICs are read again while redirection is possible (a guest
    /// may change its logical IDs, or start a CPU, after programming its messages).
    static let readingRefreshNanoseconds: UInt64 = 1_000_000_000

    private struct Choice: Equatable {
        let guest: MSIMessage
        let vcpu: Int
    }

    private let router: InterruptRouter
    private let apics: LocalAPICDirectory
    private let requestReadings: @Sendable () -> Void
    private let sampleActivity: @Sendable () -> [VCPUActivitySample]
    private let messagesChanged = DispatchSemaphore(value: 0)
    private let messageGeneration = Atomic<UInt64>(0)
    private let stopping = Atomic<Bool>(false)
    private var thread: HostThread?
    /// Set before `start`.
    public var mode = InterruptRedirectionMode.haltedOrDescheduled

    /// Routes moved to a vCPU the VMM chose (a new choice counts again).
    public let retargets = Counter()
    /// Routes given back to the guest's message.
    public let restores = Counter()
    /// Failed route updates (`KVM_SET_GSI_ROUTING`); the last error is kept.
    public let failures = Counter()
    public let lastFailure = Mutex<String?>(nil)

    /// `requestReadings` asks each vCPU thread to read its local APIC into `apics` (and kicks
    /// it); `sampleActivity` reports each vCPU's blocking state and run-queue wait.
    public init(router: InterruptRouter, apics: LocalAPICDirectory, requestReadings: @escaping @Sendable () -> Void,
                sampleActivity: @escaping @Sendable () -> [VCPUActivitySample]) {
        self.router = router
        self.apics = apics
        self.requestReadings = requestReadings
        self.sampleActivity = sampleActivity
    }

    /// Called when the guest reprograms an MSI message.
    public func guestMessagesChanged() {
        messageGeneration.add(1, ordering: .relaxed)
        messagesChanged.signal()
    }

    public func start() throws {
        thread = try HostThread(name: "irqredir") { [self] in run() }
    }

    /// Stops the thread and gives every route back to the guest's message.
    public func stop() {
        stopping.store(true, ordering: .relaxed)
        messagesChanged.signal()
        thread?.join()
        thread = nil
    }

    private func run() {
        let countsHalts = mode == .haltedOrDescheduled
        var tracker = VCPUActivityTracker(countsHalts: countsHalts)
        var choices: [UInt32: Choice] = [:]
        var readingsAskedAt: UInt64?
        var sampledAt: UInt64?
        var readingsGeneration = UInt64.max
        while !stopping.load(ordering: .relaxed) {
            let movable = router.guestMessages().filter { $0.value.isInterruptMessage && $0.value.allowsAnyDestinationCPU }
            if movable.isEmpty {
                apply([:], [:], replacing: &choices)
                tracker = VCPUActivityTracker(countsHalts: countsHalts)
                sampledAt = nil
                _ = messagesChanged.wait(timeout: .now() + .milliseconds(100))
                continue
            }
            let now = MonotonicClock.now()
            let generation = messageGeneration.load(ordering: .relaxed)
            if generation != readingsGeneration || readingsAskedAt.map({ now - $0 >= Self.readingRefreshNanoseconds }) ?? true {
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
                guard let vcpu = InterruptRedirectionPolicy.target(for: message, apics: identities, running: running,
                                                                   current: choices[gsi].flatMap { $0.guest == message ? $0.vcpu : nil },
                                                                   spread: Int(gsi)),
                      let apicID = identities[vcpu]?.apicID, apicID < 0xFF else { continue }
                next[gsi] = Choice(guest: message, vcpu: vcpu)
                redirections[gsi] = .init(guest: message, delivered: message.delivered(toPhysicalAPIC: UInt8(apicID)))
            }
            apply(next, redirections, replacing: &choices)
            usleep(UInt32(Self.intervalNanoseconds / 1000))
        }
        apply([:], [:], replacing: &choices)
    }

    /// Installs `redirections` (for the choices `next`) and counts what changed, unless `next`
    /// is what is installed.
    private func apply(_ next: [UInt32: Choice], _ redirections: [UInt32: InterruptRouter.Redirection],
                       replacing choices: inout [UInt32: Choice]) {
        guard next != choices else { return }
        do {
            try router.setRedirections(redirections)
        } catch {
            failures.add()
            lastFailure.withLock { $0 = "\(error)" }
            return
        }
        for (gsi, choice) in next where choices[gsi] != choice { retargets.add() }
        for gsi in choices.keys where next[gsi] == nil { restores.add() }
        choices = next
    }
}
