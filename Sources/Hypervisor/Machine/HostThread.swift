import CKVM
import Glibc

/// A named POSIX thread, for the VMM's long-lived threads (vCPUs, console, signals).
public final class HostThread: Sendable {
    private final class Box {
        let name: String
        let body: @Sendable () -> Void
        init(name: String, body: @escaping @Sendable () -> Void) { self.name = name; self.body = body }
    }

    public let handle: pthread_t
    public let name: String

    /// Starts `body` on a new thread named `name` (Linux keeps at most 15 bytes).
    public init(name: String, body: @escaping @Sendable () -> Void) throws {
        let box = Unmanaged.passRetained(Box(name: name, body: body)).toOpaque()
        var thread = pthread_t()
        let result = pthread_create(
            &thread, nil,
            { argument in
                let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
                _ = box.name.withCString { ckvm_set_thread_name($0) }
                box.body()
                return nil
            }, box)
        if result != 0 {
            Unmanaged<Box>.fromOpaque(box).release()
            throw KVMError(.createThread(name: name), errno: result)
        }
        self.handle = thread
        self.name = name
    }

    public func join() {
        pthread_join(handle, nil)
    }

    /// Interrupts a blocking system call on the thread (KVM_RUN returns EINTR).
    public func kick() {
        pthread_kill(handle, VCPUKickSignal.number)
    }
}

/// The signal used to kick vCPU threads out of `KVM_RUN`; its handler does nothing.
public enum VCPUKickSignal {
    public static let number = SIGUSR1

    /// Installs the empty handler once per process (without SA_RESTART, so KVM_RUN returns EINTR).
    public static func install() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(number, &action, nil)
    }
}
