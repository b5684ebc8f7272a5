import CKVM

/// Why a vCPU stopped running guest code.
public enum VCPUExit: Equatable, Sendable {
    /// `KVM_EXIT_HLT`: only without an in-kernel irqchip, which otherwise handles HLT itself.
    case halted
    /// `KVM_EXIT_SHUTDOWN`: a triple fault; on a PC this resets the machine.
    case shutdown
    /// `KVM_EXIT_SYSTEM_EVENT` with KVM's event type (1 shutdown, 2 reset, 3 crash).
    case systemEvent(type: UInt32)
    /// `KVM_EXIT_INTERNAL_ERROR` (suberror 1 is an emulation failure).
    case internalError(suberror: UInt32)
    /// `KVM_EXIT_FAIL_ENTRY`: the hardware refused the guest state.
    case failedEntry(reason: UInt64)
    /// An exit reason this VMM does not handle.
    case unhandled(reason: UInt32)
    /// The VMM asked the vCPU to stop (`shouldStop` returned true).
    case stopRequested
}

/// Runs one vCPU: enters the guest, dispatches port I/O and MMIO exits to the buses, and
/// returns on any exit that needs a decision above the vCPU.
public struct VCPURunLoop: Sendable {
    public let vcpu: VCPU
    public let portBus: IOBus
    public let mmioBus: IOBus

    public init(vcpu: VCPU, portBus: IOBus, mmioBus: IOBus) {
        self.vcpu = vcpu
        self.portBus = portBus
        self.mmioBus = mmioBus
    }

    /// Runs until an exit needs a decision above the vCPU or `shouldStop` says so (it is asked
    /// before every entry, as is `beforeEntry`, which may use the vCPU while it is out of KVM_RUN).
    public func run(until shouldStop: () -> Bool, beforeEntry: () -> Void = {}) throws -> VCPUExit {
        var history = ExitHistory(capacity: 1)
        return try run(until: shouldStop, beforeEntry: beforeEntry, history: &history)
    }

    /// The same, recording every exit to userspace in `history` (for diagnosing a triple fault or hang).
    public func run(until shouldStop: () -> Bool, beforeEntry: () -> Void = {}, history: inout ExitHistory) throws
        -> VCPUExit
    {
        while true {
            if shouldStop() { return .stopRequested }
            beforeEntry()
            guard try vcpu.runOnce() else {
                history.record(RecordedExit(reason: UInt32(KVM_EXIT_INTR), time: MonotonicClock.now()))
                vcpu.requestImmediateExit(false)  // a kick: look at shouldStop again
                continue
            }
            let run = vcpu.run
            history.record(describe(run, time: MonotonicClock.now()))
            switch Int32(bitPattern: ckvm_exit_reason(run)) {
            case KVM_EXIT_IO:
                handlePortIO(run)
            case KVM_EXIT_MMIO:
                let address = ckvm_mmio_address(run)
                let data = UnsafeMutableRawBufferPointer(
                    start: ckvm_mmio_data(run), count: Int(min(ckvm_mmio_length(run), 8)))
                if ckvm_mmio_is_write(run) != 0 {
                    mmioBus.write(address, data: UnsafeRawBufferPointer(data))
                } else {
                    mmioBus.read(address, into: data)
                }
            case KVM_EXIT_INTR:
                continue
            case KVM_EXIT_HLT:
                return .halted
            case KVM_EXIT_SHUTDOWN:
                return .shutdown
            case KVM_EXIT_SYSTEM_EVENT:
                return .systemEvent(type: ckvm_system_event_type(run))
            case KVM_EXIT_INTERNAL_ERROR:
                return .internalError(suberror: ckvm_internal_suberror(run))
            case KVM_EXIT_FAIL_ENTRY:
                return .failedEntry(reason: ckvm_fail_entry_reason(run))
            case let reason:
                return .unhandled(reason: UInt32(bitPattern: reason))
            }
        }
    }

    /// The exit in `run` as the history keeps it (before it is handled: a read's data is not in yet).
    private func describe(_ run: UnsafeMutablePointer<kvm_run>, time: UInt64) -> RecordedExit {
        let reason = ckvm_exit_reason(run)
        var exit = RecordedExit(reason: reason, time: time)
        switch Int32(bitPattern: reason) {
        case KVM_EXIT_IO:
            exit.address = UInt64(ckvm_io_port(run))
            exit.size = ckvm_io_size(run)
            exit.isWrite = ckvm_io_direction(run) == UInt8(KVM_EXIT_IO_OUT)
            if exit.isWrite {
                exit.value = LittleEndian.value(of: UnsafeRawBufferPointer(vcpu.ioData).prefix(Int(exit.size)))
            }
        case KVM_EXIT_MMIO:
            exit.address = ckvm_mmio_address(run)
            exit.size = UInt8(truncatingIfNeeded: min(ckvm_mmio_length(run), 8))
            exit.isWrite = ckvm_mmio_is_write(run) != 0
            if exit.isWrite {
                exit.value = LittleEndian.value(
                    of: UnsafeRawBufferPointer(start: ckvm_mmio_data(run), count: Int(exit.size)))
            }
        default:
            break
        }
        return exit
    }

    /// `KVM_EXIT_IO` carries `count` items of `size` bytes (string I/O has count > 1).
    private func handlePortIO(_ run: UnsafeMutablePointer<kvm_run>) {
        let port = UInt64(ckvm_io_port(run))
        let size = Int(ckvm_io_size(run))
        let data = vcpu.ioData
        let isWrite = ckvm_io_direction(run) == UInt8(KVM_EXIT_IO_OUT)
        var offset = 0
        while offset + size <= data.count {
            let item = UnsafeMutableRawBufferPointer(rebasing: data[offset..<(offset + size)])
            if isWrite {
                portBus.write(port, data: UnsafeRawBufferPointer(item))
            } else {
                portBus.read(port, into: item)
            }
            offset += size
        }
    }
}
