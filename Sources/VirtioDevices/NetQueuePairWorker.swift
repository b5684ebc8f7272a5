import Glibc
import Hypervisor

/// Serves one receive/transmit queue pair of virtio-net against one TAP queue.
///
/// Transmit: each chain's readable buffers (virtio_net_hdr + frame) go to the TAP in one writev.
/// Receive: frames read from the TAP are copied into receive chains (several with mergeable
/// buffers, num_buffers set in the header). When the guest has no receive buffers, the TAP is
/// not read at all until the guest kicks the receive queue: frames wait in the TAP, not dropped here.
final class NetQueuePairWorker: @unchecked Sendable {
    static let frameCapacity = 1 << 17

    private let tapFD: Int32
    private let rx: QueueContext
    private let tx: QueueContext
    private let memory: GuestMemory
    private let mergeable: Bool
    private let rxStatistics: QueueStatistics
    private let txStatistics: QueueStatistics
    private let stopSignal: EventFD
    private var thread: HostThread?
    /// Called once when the driver breaks a ring (its available index jumps): the device needs a reset.
    private let onBrokenQueue: (String) -> Void
    private var broken = false

    /// A frame read from the TAP and not yet fully placed in guest buffers.
    private let frame = UnsafeMutableRawBufferPointer.allocate(byteCount: NetQueuePairWorker.frameCapacity, alignment: 16)
    private var frameLength = 0
    private var frameOffset = 0
    /// Chains already filled with part of the pending frame: (head, bytes written).
    private var heldChains: [(head: UInt16, length: UInt32, firstBuffer: VirtqueueBuffer?)] = []
    private var iovecs = [iovec](repeating: iovec(), count: 256)

    init(name: String, tapFD: Int32, rx: QueueContext, tx: QueueContext, memory: GuestMemory, mergeable: Bool,
         rxStatistics: QueueStatistics, txStatistics: QueueStatistics, onBrokenQueue: @escaping (String) -> Void) throws {
        self.onBrokenQueue = onBrokenQueue
        self.tapFD = tapFD
        self.rx = rx
        self.tx = tx
        self.memory = memory
        self.mergeable = mergeable
        self.rxStatistics = rxStatistics
        self.txStatistics = txStatistics
        stopSignal = try EventFD()
        thread = try HostThread(name: name) { [self] in run() }
    }

    deinit { frame.deallocate() }

    func stop() {
        stopSignal.signal()
        thread?.join()
        thread = nil
    }

    private func run() {
        var waitingForRxBuffers = false
        while true {
            var fds = [pollfd(fd: stopSignal.fd, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: tx.kick.fd, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: rx.kick.fd, events: Int16(POLLIN), revents: 0),
                       // The TAP is only watched while the guest has somewhere to put frames.
                       pollfd(fd: waitingForRxBuffers ? -1 : tapFD, events: Int16(POLLIN), revents: 0)]
            guard poll(&fds, nfds_t(fds.count), -1) >= 0 || errno == EINTR else { return }
            if fds[0].revents != 0 { return }
            if fds[1].revents != 0 {
                txStatistics.notifications.add(tx.kick.wait())
            }
            // Transmit runs every round: cheap when empty, and it catches chains queued with kicks suppressed.
            transmit()
            if fds[2].revents != 0 {
                rxStatistics.notifications.add(rx.kick.wait())
                waitingForRxBuffers = false
            }
            if !waitingForRxBuffers { waitingForRxBuffers = !receive() }
        }
    }

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

    private func transmit() {
        var completed = false
        while let popped = pop(tx, statistics: txStatistics) {
            completed = true
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
        if completed && tx.queue.needsInterrupt() {
            txStatistics.interrupts.add()
            tx.interrupt.raise()
        }
    }

    /// writev to the TAP, waiting for room if its queue is momentarily full.
    private func writeFrame(count: Int) -> Int {
        while true {
            let written = iovecs.withUnsafeBufferPointer { writev(tapFD, $0.baseAddress, Int32(count)) }
            if written >= 0 { return written }
            if errno == EINTR { continue }
            guard errno == EAGAIN else { return -1 }
            var out = pollfd(fd: tapFD, events: Int16(POLLOUT), revents: 0)
            _ = poll(&out, 1, 100)
        }
    }

    // MARK: Receive

    /// Moves frames from the TAP into receive chains. Returns false when it stopped for lack of
    /// receive buffers (the TAP is then left alone until the guest kicks).
    private func receive() -> Bool {
        var completed = false
        defer {
            if completed && rx.queue.needsInterrupt() {
                rxStatistics.interrupts.add()
                rx.interrupt.raise()
            }
        }
        while true {
            if frameLength == 0 {
                let count = read(tapFD, frame.baseAddress, frame.count)
                if count < 0 && errno == EINTR { continue }
                guard count > NetDevice.headerSize else { return true }  // EAGAIN: the TAP is empty
                frameLength = count
                frameOffset = 0
            }
            switch placeFrame() {
            case .placed:
                completed = true
            case .needBuffers:
                // Re-enable kicks, then look once more: buffers may have arrived in between.
                rx.queue.setNotifications(enabled: true)
                if rx.queue.hasAvailable { continue }
                return false
            }
        }
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
