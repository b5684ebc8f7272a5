import Glibc

/// Where a machine's vCPU threads wait while the machine is paused. `pause` returns once every
/// running vCPU thread waits here (out of KVM_RUN, before its next entry); `resume` lets them go.
/// A pthread mutex and condition variable, which ThreadSanitizer understands (see `Lock`).
final class VCPUPauseGate: @unchecked Sendable {
    // @unchecked: the fields are only reached with `mutex` held.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var paused = false
    /// vCPU threads running their loop, and how many of them wait here.
    private var running = 0
    private var waiting = 0
    /// Set when the run ends: nobody waits again, and a pause in progress gives up.
    private var closed = false

    init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(changed, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        changed.deallocate()
        mutex.deallocate()
    }

    var isPaused: Bool { locked { paused } }

    /// A vCPU thread starts or ends its run loop.
    func threadStarted() { locked { running += 1 } }

    func threadEnded() {
        locked {
            running -= 1
            pthread_cond_broadcast(changed)
        }
    }

    /// On a vCPU thread before it enters the guest: waits while the machine is paused.
    func waitWhilePaused() {
        locked {
            guard paused && !closed else { return }
            waiting += 1
            pthread_cond_broadcast(changed)
            while paused && !closed { pthread_cond_wait(changed, mutex) }
            waiting -= 1
            pthread_cond_broadcast(changed)
        }
    }

    /// Marks the machine paused; `kick` then gets every vCPU out of KVM_RUN. Waits until every
    /// running vCPU thread waits here, or `timeout` nanoseconds. False if they did not all arrive
    /// (or the run ended), in which case the machine is not left paused.
    func pause(timeout: UInt64, kick: () -> Void) -> Bool {
        locked { paused = true }
        kick()
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let total = UInt64(deadline.tv_nsec) + timeout
        deadline.tv_sec += Int(total / 1_000_000_000)
        deadline.tv_nsec = Int(total % 1_000_000_000)
        return locked {
            while !closed && waiting < running {
                if pthread_cond_timedwait(changed, mutex, &deadline) == ETIMEDOUT { break }
            }
            let arrived = !closed && waiting >= running
            if !arrived {
                paused = false
                pthread_cond_broadcast(changed)
            }
            return arrived
        }
    }

    func resume() {
        locked {
            paused = false
            pthread_cond_broadcast(changed)
        }
    }

    /// The run is ending: waiting threads go on (to see the stop), nobody waits again, and the
    /// machine no longer reads as paused.
    func close() {
        locked {
            closed = true
            paused = false
            pthread_cond_broadcast(changed)
        }
    }

    private func locked<Result>(_ body: () -> Result) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return body()
    }
}
