import Glibc
import Hypervisor

/// Serves one receive/transmit queue pair of virtio-net against one TAP queue.
///
/// Transmit: each chain's readable buffers (virtio_net_hdr + frame) go to the TAP in one writev.
/// Receive: frames read from the TAP are copied into receive chains (several with mergeable
/// buffers, num_buffers set in the header). When the guest has no receive buffers, the TAP is
/// not read at all until the guest posts some: frames wait in the TAP, not dropped here.
final class NetQueuePairHandler: QueueHandler, @unchecked Sendable {
    static let frameCapacity = 1 << 17

    let name: String
    private let tapFD: Int32
    private let rx: QueueContext
    private let tx: QueueContext
    private let memory: GuestMemory
    private let mergeable: Bool
    private let rxStatistics: QueueStatistics
    private let txStatistics: QueueStatistics
    /// Called once when the driver breaks a ring (its available index jumps): the device needs a reset.
    private let onBrokenQueue: (String) -> Void
    private var broken = false
    /// A frame is pending and the receive ring is empty: the TAP is left alone until buffers come.
    private var waitingForRxBuffers = false
    /// Polls left before the TAP is read again, and the current back-off (see `poll`).
    private var tapReadsToSkip = 0
    private var emptyTAPBackoff = 0

    /// A frame read from the TAP and not yet fully placed in guest buffers.
    private let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: NetQueuePairHandler.frameCapacity, alignment: 16)
    private var frameLength = 0
    private var frameOffset = 0
    /// Chains already filled with part of the pending frame: (head, bytes written).
    private var heldChains: [(head: UInt16, length: UInt32, firstBuffer: VirtqueueBuffer?)] = []
    private var iovecs = [iovec](repeating: iovec(), count: 256)
    private var rxInterrupts: CompletionInterrupts
    private var txInterrupts: CompletionInterrupts

    init(name: String, tapFD: Int32, rx: QueueContext, tx: QueueContext, memory: GuestMemory, mergeable: Bool,
         rxStatistics: QueueStatistics, txStatistics: QueueStatistics, onBrokenQueue: @escaping (String) -> Void) {
        self.name = name
        self.onBrokenQueue = onBrokenQueue
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
        txStatistics.notifications.add(tx.kick.drain())
        rxStatistics.notifications.add(rx.kick.drain())
        guard !broken else { return false }
        // A readable TAP needs no check here: it is among the wake descriptors.
        return tx.queue.hasAvailable || (waitingForRxBuffers && rx.queue.hasAvailable)
    }

    var wakeDescriptors: [Int32] {
        // The TAP is only watched while the guest has somewhere to put frames.
        [tx.kick.fd, rx.kick.fd] + (waitingForRxBuffers ? [] : [tapFD])
    }

    var requestsHandled: UInt64 { rxStatistics.requests.count + txStatistics.requests.count }

    /// The next available chain; a broken ring stops this pair until the driver resets the device.
    private func pop(_ context: QueueContext, statistics: QueueStatistics) -> DescriptorChainResult? {
        guard !broken else { return nil }
        do {
            return try context.queue.popAvailable()
        } catch {
            broken = true
            statistics.errors.add()
            onBrokenQueue("queue \(context.index): \(error)")
            return nil
        }
    }

    // MARK: Transmit

    private func transmit(budget: Int) -> Int {
        var sent = 0
        while sent < budget, let popped = pop(tx, statistics: txStatistics) {
            sent += 1
            txStatistics.requests.add()
            switch popped {
            case .failure(let head, _):
                txStatistics.errors.add()
                tx.queue.addUsed(head: head, length: 0)
            case .chain(let chain):
                var count = 0
                var total = 0
                for buffer in chain.readable where count < iovecs.count {
                    guard let slice = try? memory.slice(at: buffer.address, length: UInt64(buffer.length)) else { continue }
                    iovecs[count] = iovec(iov_base: slice.baseAddress, iov_len: slice.count)
                    count += 1
                    total += slice.count
                }
                if total <= NetDevice.headerSize || writeFrame(count: count) != total {
                    txStatistics.errors.add()
                } else {
                    txStatistics.bytes.add(UInt64(total - NetDevice.headerSize))
                }
                tx.queue.addUsed(head: chain.head, length: 0)
            }
        }
        txInterrupts.published(sent, moreExpected: sent == budget)
        return sent
    }

    /// writev to the TAP, waiting for room if its queue is momentarily full.
    private func writeFrame(count: Int) -> Int {
        while true {
            let written = iovecs.withUnsafeBufferPointer { writev(tapFD, $0.baseAddress, Int32(count)) }
            if written >= 0 { return written }
            if errno == EINTR { continue }
            guard errno == EAGAIN else { return -1 }
            // A TAP's transmit path hands frames straight to the host stack, so this is rare;
            // the wait is short because a side core serves other queues too.
            var out = pollfd(fd: tapFD, events: Int16(POLLOUT), revents: 0)
            _ = Glibc.poll(&out, 1, 1)
        }
    }

    // MARK: Receive

    /// Moves up to `budget` frames from the TAP into receive chains; returns how many. Sets
    /// `waitingForRxBuffers` when it stopped for lack of receive buffers.
    private func receive(budget: Int) -> Int {
        var received = 0
        // Stopping at the budget means more frames wait in the TAP; otherwise it ran dry.
        defer { rxInterrupts.published(received, moreExpected: received == budget) }
        while received < budget {
            if frameLength == 0 {
                let count = read(tapFD, frame.baseAddress, frame.count)
                if count < 0 && errno == EINTR { continue }
                guard count > NetDevice.headerSize else { return received }  // EAGAIN: the TAP is empty
                frameLength = count
                frameOffset = 0
            }
            switch placeFrame() {
            case .placed:
                received += 1
            case .needBuffers:
                waitingForRxBuffers = true
                return received
            }
        }
        return received
    }

    private enum Placement { case placed, needBuffers }

    /// Copies the pending frame into as many chains as it needs (one without mergeable buffers).
    private func placeFrame() -> Placement {
        while frameOffset < frameLength {
            guard let popped = pop(rx, statistics: rxStatistics) else { return .needBuffers }
            guard case .chain(let chain) = popped else {
                if case .failure(let head, _) = popped { rx.queue.addUsed(head: head, length: 0) }
                rxStatistics.errors.add()
                continue
            }
            let capacity = Int(chain.writableLength)
            if !mergeable && capacity < frameLength {
                // The driver posted a buffer too small for a whole frame without mergeable buffers.
                rx.queue.addUsed(head: chain.head, length: 0)
                rxStatistics.errors.add()
                frameLength = 0
                return .placed
            }
            var written = 0
            for buffer in chain.writable where frameOffset < frameLength {
                let take = min(Int(buffer.length), frameLength - frameOffset)
                let source = UnsafeRawBufferPointer(rebasing: frame[frameOffset..<(frameOffset + take)])
                guard (try? memory.write(source, at: buffer.address)) != nil else { break }
                frameOffset += take
                written += take
            }
            heldChains.append((chain.head, UInt32(written), chain.writable.first))
        }
        // num_buffers (header offset 10) tells the driver how many chains the frame spans.
        if let first = heldChains.first?.firstBuffer, first.length >= UInt32(NetDevice.headerSize) {
            try? memory.store(UInt16(heldChains.count), at: first.address + 10)
        }
        for chain in heldChains { rx.queue.addUsed(head: chain.head, length: chain.length) }
        rxStatistics.requests.add()
        rxStatistics.bytes.add(UInt64(frameLength - NetDevice.headerSize))
        heldChains.removeAll(keepingCapacity: true)
        frameLength = 0
        return .placed
    }
}
