import Glibc
import Hypervisor

/// Serves one receive/transmit queue pair of virtio-net against one TAP queue.
///
/// Transmit: each chain's readable buffers (virtio_net_hdr + frame) go to the TAP in one writev.
/// Receive: frames read from the TAP are copied into receive chains (several with mergeable
/// buffers, num_buffers set in the header). When the guest has no receive buffers, the TAP is
/// not read at all until the guest posts some: frames wait in the TAP, not dropped here.
final class NetQueuePairHandler: QueueHandler, @unchecked Sendable {
    // @unchecked: one worker at a time calls a handler (QueueHandler's contract; engines hand a
    // handler over under a lock and detach it before another may take it), so its state needs none.
    // For the same reason its per-poll state is @exclusivity(unchecked), as BlockQueueHandler's is:
    // the runtime's access checks on it were ~5% of side0 in net-rr (perf record, hvctl bench
    // --workload net-rr --mode poll), and no two accesses to it can overlap on one thread here.

    static let frameCapacity = 1 << 17

    let name: String
    private let tapFD: Int32
    private let rx: QueueContext
    private let tx: QueueContext
    private let memory: GuestMemory
    private let mergeable: Bool
    private let rxStatistics: QueueStatistics
    private let txStatistics: QueueStatistics
    /// Where chains come from; once the driver broke either ring, the pair stops until reset.
    @exclusivity(unchecked) private var rxIntake: QueueIntake
    @exclusivity(unchecked) private var txIntake: QueueIntake
    private var broken: Bool { rxIntake.isBroken || txIntake.isBroken }
    /// A frame is pending and the receive ring is empty: the TAP is left alone until buffers come.
    @exclusivity(unchecked) private var waitingForRxBuffers = false
    /// Polls left before the TAP is read again, and the current back-off (see `poll`).
    @exclusivity(unchecked) private var tapReadsToSkip = 0
    @exclusivity(unchecked) private var emptyTAPBackoff = 0

    /// A frame read from the TAP and not yet fully placed in guest buffers.
    private let frame = UnsafeMutableRawBufferPointer.allocate(
        byteCount: NetQueuePairHandler.frameCapacity, alignment: 16)
    @exclusivity(unchecked) private var frameLength = 0
    @exclusivity(unchecked) private var frameOffset = 0
    /// When the pending frame was read from the TAP, for the receive queue's latency.
    @exclusivity(unchecked) private var frameReadAt: UInt64 = 0
    /// Chains already filled with part of the pending frame: (head, bytes written).
    /// A transmit chain the TAP refused with EAGAIN, sent first by the next poll, and when it was taken.
    @exclusivity(unchecked) private var pendingTransmit: (chain: DescriptorChain, taken: UInt64)?
    @exclusivity(unchecked) private var heldChains: [(head: UInt16, length: UInt32, firstBuffer: VirtqueueBuffer?)] = []
    @exclusivity(unchecked) private var iovecs = [iovec](repeating: iovec(), count: 256)
    @exclusivity(unchecked) private var rxInterrupts: CompletionInterrupts
    @exclusivity(unchecked) private var txInterrupts: CompletionInterrupts
    /// The current poll round's time, for latencies: transmit from taking a chain to its used entry,
    /// receive from reading a frame off the TAP to its used entries.
    @exclusivity(unchecked) private var clock = RoundClock()

    init(
        name: String, tapFD: Int32, rx: QueueContext, tx: QueueContext, memory: GuestMemory, mergeable: Bool,
        rxStatistics: QueueStatistics, txStatistics: QueueStatistics, onBrokenQueue: @escaping (String) -> Void
    ) {
        self.name = name
        rxIntake = QueueIntake(
            context: rx, statistics: rxStatistics, label: "queue \(rx.index)", onBroken: onBrokenQueue)
        txIntake = QueueIntake(
            context: tx, statistics: txStatistics, label: "queue \(tx.index)", onBroken: onBrokenQueue)
        self.tapFD = tapFD
        self.rx = rx
        self.tx = tx
        self.memory = memory
        self.mergeable = mergeable
        self.rxStatistics = rxStatistics
        self.txStatistics = txStatistics
        rxInterrupts = CompletionInterrupts(context: rx, statistics: rxStatistics)
        txInterrupts = CompletionInterrupts(context: tx, statistics: txStatistics)
    }

    deinit { frame.deallocate() }

    // MARK: QueueHandler

    func poll(budget: Int) -> Int {
        clock.nextRound()
        var done = transmit(budget: budget)
        if waitingForRxBuffers && !broken && rx.queue.hasAvailable { waitingForRxBuffers = false }
        if !waitingForRxBuffers && tapReadsToSkip == 0 {
            let received = receive(budget: budget)
            done += received
            // While polled, an empty TAP is read less and less often (up to every 64th poll): a
            // read(2) is the one system call in an idle poll and would dominate the round.
            if rx.queue.notificationsEnabled || received > 0 {
                emptyTAPBackoff = 0
            } else {
                emptyTAPBackoff = min(64, max(1, emptyTAPBackoff * 2))
                tapReadsToSkip = emptyTAPBackoff
            }
        } else if tapReadsToSkip > 0 {
            tapReadsToSkip -= 1
        }
        return done
    }

    func setGuestNotifications(enabled: Bool) {
        rx.queue.setNotifications(enabled: enabled)
        tx.queue.setNotifications(enabled: enabled)
        // A change of executor mode (woken by the TAP, or going to sleep) reads the TAP at once.
        emptyTAPBackoff = 0
        tapReadsToSkip = 0
    }

    func prepareToSleep() -> Bool {
        rxInterrupts.flush()
        txInterrupts.flush()
        txStatistics.add(.notifications, tx.kick.drain())
        rxStatistics.add(.notifications, rx.kick.drain())
        guard !broken else { return false }
        // A readable TAP needs no check here: it is among the wake descriptors.
        return pendingTransmit != nil || tx.queue.hasAvailable || (waitingForRxBuffers && rx.queue.hasAvailable)
    }

    var wakeDescriptors: [Int32] {
        // The TAP is only watched while the guest has somewhere to put frames.
        [tx.kick.fd, rx.kick.fd] + (waitingForRxBuffers ? [] : [tapFD])
    }

    var kickDescriptors: [Int32] { [tx.kick.fd, rx.kick.fd] }

    var requestsHandled: UInt64 { rxStatistics.requests.count + txStatistics.requests.count }

    // MARK: Transmit

    /// Sends up to `budget` chains' frames; a frame the TAP cannot take now (EAGAIN) stays the
    /// next one to send, and the poll moves on instead of waiting on a shared core.
    private func transmit(budget: Int) -> Int {
        var sent = 0
        while sent < budget {
            let chain: DescriptorChain
            let taken: UInt64
            if let pending = pendingTransmit {
                (chain, taken) = pending
            } else {
                guard !broken else { break }
                let next = txIntake.next()
                if case .none = next { break }
                txStatistics.add(.requests)
                guard case .chain(let popped) = next else {
                    sent += 1  // rejected: already returned empty
                    continue
                }
                chain = popped
                taken = clock.now()
            }
            let (count, total) = iovecs.withUnsafeMutableBufferPointer { vectors in
                memory.fillIOVecs(
                    vectors, from: chain.readable.lazy.map { (address: $0.address, length: UInt64($0.length)) })
            }
            let written = total <= NetDevice.headerSize ? -1 : writeFrame(count: count)
            if written == -Int(EAGAIN) {
                pendingTransmit = (chain, taken)
                break
            }
            pendingTransmit = nil
            if written != total {
                txStatistics.add(.errors)
            } else {
                txStatistics.add(.bytes, UInt64(clamping: total - NetDevice.headerSize))
            }
            tx.queue.addUsed(head: chain.head, length: 0)
            txStatistics.recordLatency(nanoseconds: clock.now() &- taken)
            sent += 1
        }
        txInterrupts.published(sent, moreExpected: sent == budget || pendingTransmit != nil)
        return sent
    }

    /// writev to the TAP: the bytes written, -EAGAIN when its queue is full now, else -1.
    private func writeFrame(count: Int) -> Int {
        while true {
            let written = iovecs.withUnsafeBufferPointer { writev(tapFD, $0.baseAddress, Int32(count)) }
            if written >= 0 { return written }
            if errno == EINTR { continue }
            return errno == EAGAIN ? -Int(EAGAIN) : -1
        }
    }

    // MARK: Receive

    /// Moves frames from the TAP into receive chains, consuming at most `budget` chains (broken
    /// and refused ones included), so a poll is bounded whatever the guest posts. Returns the
    /// chains consumed. Sets `waitingForRxBuffers` when it stopped for lack of receive buffers.
    private func receive(budget: Int) -> Int {
        var consumed = 0
        var framesPlaced = 0
        // Stopping at the budget means more frames or chains wait; otherwise the TAP ran dry.
        defer {
            if framesPlaced > 0 { rxStatistics.add(.requests, UInt64(clamping: framesPlaced)) }
            rxInterrupts.published(consumed, moreExpected: consumed >= budget)
        }
        while consumed < budget {
            if frameLength == 0 {
                let count = read(tapFD, frame.baseAddress, frame.count)
                if count < 0 && errno == EINTR { continue }
                guard count > NetDevice.headerSize else { return consumed }  // EAGAIN: the TAP is empty
                frameLength = count
                frameOffset = 0
                frameReadAt = clock.now()
            }
            switch placeFrame(chainBudget: budget - consumed) {
            case .placed(let chains):
                consumed += chains
                framesPlaced += 1
            case .partial(let chains):
                consumed += chains  // the budget ran out mid-frame: the next poll goes on with it
            case .dropped(let chains):
                consumed += chains
            case .needBuffers(let chains):
                consumed += chains
                waitingForRxBuffers = true
                return consumed
            }
        }
        return consumed
    }

    /// How far `placeFrame` got, with the chains it consumed from the receive ring.
    private enum Placement {
        case placed(Int)
        /// The chain budget ran out before the frame was complete; its chains stay held.
        case partial(Int)
        /// The frame could not be placed (no buffer big enough without mergeable buffers, or
        /// more chains than the queue holds): it is dropped and counted as an error.
        case dropped(Int)
        case needBuffers(Int)
    }

    /// Copies the pending frame into as many chains as it needs (one without mergeable buffers),
    /// taking at most `chainBudget` chains this call and holding at most one queue's worth.
    private func placeFrame(chainBudget: Int) -> Placement {
        var consumed = 0
        while frameOffset < frameLength {
            guard consumed < chainBudget else { return .partial(consumed) }
            let next = broken ? .none : rxIntake.next()
            if case .none = next { return .needBuffers(consumed) }
            consumed += 1
            guard case .chain(let chain) = next else { continue }  // rejected: already returned empty
            let capacity = chain.writableLength
            if capacity == 0 || (!mergeable && capacity < UInt64(frameLength)) {
                // Nothing to write into (a zero-length or read-only chain), or a buffer too small
                // for a whole frame without mergeable buffers: returned empty, as an error.
                rx.queue.addUsed(head: chain.head, length: 0)
                guard mergeable else {
                    dropFrame()
                    return .dropped(consumed)
                }
                rxStatistics.add(.errors)
                continue
            }
            var written = 0
            for buffer in chain.writable where frameOffset < frameLength {
                let take = min(Int(buffer.length), frameLength - frameOffset)
                let source = UnsafeRawBufferPointer(rebasing: frame[frameOffset..<(frameOffset + take)])
                guard (try? memory.write(source, at: buffer.address)) != nil else { break }
                frameOffset += take
                written += take
            }
            heldChains.append((chain.head, UInt32(truncatingIfNeeded: written), chain.writable.first))
            if written == 0 || (frameOffset < frameLength && heldChains.count >= Int(rx.queue.size)) {
                // A chain that took nothing (its buffers left guest RAM) or a frame that would need
                // more chains than the ring holds: give up on the frame rather than hold more.
                dropFrame()
                return .dropped(consumed)
            }
        }
        // num_buffers (header offset 10) tells the driver how many chains the frame spans.
        if let first = heldChains.first?.firstBuffer, first.length >= UInt32(NetDevice.headerSize) {
            try? memory.store(UInt16(truncatingIfNeeded: heldChains.count), at: first.address + 10)
        }
        for chain in heldChains { rx.queue.addUsed(head: chain.head, length: chain.length) }
        rxStatistics.add(.bytes, UInt64(clamping: frameLength - NetDevice.headerSize))
        rxStatistics.recordLatency(nanoseconds: clock.now() &- frameReadAt)
        heldChains.removeAll(keepingCapacity: true)
        frameLength = 0
        return .placed(consumed)
    }

    /// Forgets the pending frame: chains already holding part of it go back empty.
    private func dropFrame() {
        for chain in heldChains { rx.queue.addUsed(head: chain.head, length: 0) }
        heldChains.removeAll(keepingCapacity: true)
        frameLength = 0
        frameOffset = 0
        rxStatistics.add(.errors)
    }
}
