/// What a device does for one of its queues (or a queue pair that must be served together),
/// independent of which thread drives it: an ioeventfd-woken thread (`NotifyEngine`) or a side
/// core polling many handlers (`SideCoreEngine`). One executor thread at a time calls a handler.
public protocol QueueHandler: AnyObject, Sendable {
    /// For thread names and statistics, e.g. "blk0-q1".
    var name: String { get }
    /// Does at most `budget` requests' worth of work without blocking: takes available chains,
    /// starts them, finishes completed ones, raises the interrupt if the driver wants one.
    /// Returns how much it did; 0 means it found nothing to do.
    func poll(budget: Int) -> Int
    /// Asks the driver to kick (true) or not (false, while a side core polls the queues).
    func setGuestNotifications(enabled: Bool)
    /// Called before the executor sleeps on `wakeDescriptors`: clears the kick eventfds (counting
    /// them as notifications) and returns true when work is already waiting, e.g. a chain published
    /// just before notifications were re-enabled, which no kick will announce.
    func prepareToSleep() -> Bool
    /// File descriptors whose readability means work may be waiting: kick eventfds, an io_uring
    /// (readable while completions wait), a TAP. Read after `prepareToSleep`; may change between sleeps.
    var wakeDescriptors: [Int32] { get }
    /// Those of `wakeDescriptors` that are the guest's doorbells (kick eventfds): a wake by one of
    /// them is an exit a longer poll window would have saved (`AdaptivePollWindow`).
    var kickDescriptors: [Int32] { get }
    /// Requests taken from the guest so far (chains of every queue it serves), read from any
    /// thread: the I/O core manager's measure of load.
    var requestsHandled: UInt64 { get }
    /// Whether requests it started are being carried out by kernel threads (an io_uring's
    /// io-wq workers, which run where the submitting side core may run): the side core then
    /// yields its CPU when it has nothing else to do, rather than spin beside them.
    var awaitsKernelThreads: Bool { get }
}

extension QueueHandler {
    public var awaitsKernelThreads: Bool { false }
    /// A handler woken by nothing but kicks.
    public var kickDescriptors: [Int32] { wakeDescriptors }
}

/// Runs queue handlers on some threads. A device's handlers are attached at DRIVER_OK and
/// detached at reset; `detach` returns only once no thread will call them again.
public protocol QueueEngine: AnyObject, Sendable {
    /// What handlers attached to this engine should do about interrupt coalescing.
    var interruptCoalescing: InterruptCoalescingPolicy? { get }
    func attach(_ handlers: [QueueHandler]) throws
    func detach(_ handlers: [QueueHandler])
}
