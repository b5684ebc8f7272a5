import Hypervisor
import VirtioDevices

/// How a run serves the device queues of all its VMs, and how their interrupts may move.
public struct IOConfiguration: Sendable {
    public enum Engine: Sendable {
        /// A thread per queue, woken by the guest's kicks.
        case notify
        /// Side cores shared by every VM's queues.
        case sideCores(SideCoreConfiguration)
    }

    public var engine: Engine
    /// With side cores: the I/O core manager's policy (it resizes the engine from its load), or
    /// nil for a count that changes only when asked.
    public var coreCountPolicy: SideCoreCountPolicy?
    /// Told of each resize the I/O core manager makes, on its thread.
    public var onResize: (@Sendable (IOCoreManager.Resize) -> Void)?
    public var interruptRedirection: InterruptRedirectionMode

    public init(
        engine: Engine, coreCountPolicy: SideCoreCountPolicy? = nil,
        onResize: (@Sendable (IOCoreManager.Resize) -> Void)? = nil,
        interruptRedirection: InterruptRedirectionMode = .off
    ) {
        self.engine = engine
        self.coreCountPolicy = coreCountPolicy
        self.onResize = onResize
        self.interruptRedirection = interruptRedirection
    }

    /// The mode's name in statistics: notify, poll or hybrid.
    public var modeName: String {
        switch engine {
        case .notify: return "notify"
        case .sideCores(let configuration): return configuration.mode.rawValue
        }
    }

    var sideCores: SideCoreConfiguration? {
        if case .sideCores(let configuration) = engine { return configuration }
        return nil
    }
}
