// C shim over the KVM API: only what Swift cannot import directly.
// The _IO*/_IOW* request macros, the anonymous unions of struct kvm_run and
// raw syscalls without a libc wrapper are exposed as small prefixed functions.
// Every function returns what ioctl()/syscall() returns (-1 with errno set on failure).
#ifndef CKVM_H
#define CKVM_H

#include <linux/kvm.h>
#include <stdint.h>
#include <stddef.h>

// MARK: /dev/kvm (system) ioctls
int ckvm_get_api_version(int kvm_fd);
int ckvm_check_extension(int fd, long capability);
int ckvm_get_vcpu_mmap_size(int kvm_fd);
int ckvm_create_vm(int kvm_fd, unsigned long type);
int ckvm_get_supported_cpuid(int kvm_fd, struct kvm_cpuid2 *cpuid);

// MARK: VM ioctls
int ckvm_set_user_memory_region(int vm_fd, const struct kvm_userspace_memory_region *region);
int ckvm_create_vcpu(int vm_fd, unsigned long vcpu_id);
int ckvm_create_irqchip(int vm_fd);
int ckvm_create_pit2(int vm_fd, const struct kvm_pit_config *config);
int ckvm_set_tss_addr(int vm_fd, unsigned long address);
int ckvm_set_identity_map_addr(int vm_fd, uint64_t address);
int ckvm_irq_line(int vm_fd, uint32_t irq, uint32_t level);
int ckvm_set_gsi_routing(int vm_fd, const struct kvm_irq_routing *routing);
int ckvm_irqfd(int vm_fd, const struct kvm_irqfd *irqfd);
int ckvm_ioeventfd(int vm_fd, const struct kvm_ioeventfd *ioeventfd);
int ckvm_enable_cap(int fd, const struct kvm_enable_cap *cap);
int ckvm_get_stats_fd(int fd);

// MARK: vCPU ioctls
int ckvm_run(int vcpu_fd);
int ckvm_get_regs(int vcpu_fd, struct kvm_regs *regs);
int ckvm_set_regs(int vcpu_fd, const struct kvm_regs *regs);
int ckvm_get_sregs(int vcpu_fd, struct kvm_sregs *sregs);
int ckvm_set_sregs(int vcpu_fd, const struct kvm_sregs *sregs);
int ckvm_set_fpu(int vcpu_fd, const struct kvm_fpu *fpu);
int ckvm_set_cpuid2(int vcpu_fd, const struct kvm_cpuid2 *cpuid);
int ckvm_get_lapic(int vcpu_fd, struct kvm_lapic_state *lapic);
int ckvm_set_lapic(int vcpu_fd, const struct kvm_lapic_state *lapic);
int ckvm_get_mp_state(int vcpu_fd, struct kvm_mp_state *state);
/* KVM_GET_MSRS for one MSR; returns 1 when KVM read it. */
int ckvm_get_msr(int vcpu_fd, uint32_t index, uint64_t *value);
/* KVM_SET_MSRS of one MSR: returns 1 when KVM took it. */
int ckvm_set_msr(int vcpu_fd, uint32_t index, uint64_t value);

// MARK: struct kvm_run accessors (anonymous unions)
static inline struct kvm_run *ckvm_run_ptr(void *mapping) { return (struct kvm_run *)mapping; }
static inline uint32_t ckvm_exit_reason(const struct kvm_run *run) { return run->exit_reason; }
static inline void ckvm_set_immediate_exit(struct kvm_run *run, uint8_t value) {
    __atomic_store_n(&run->immediate_exit, value, __ATOMIC_SEQ_CST);
}
static inline uint8_t ckvm_io_direction(const struct kvm_run *run) { return run->io.direction; }
static inline uint8_t ckvm_io_size(const struct kvm_run *run) { return run->io.size; }
static inline uint16_t ckvm_io_port(const struct kvm_run *run) { return run->io.port; }
static inline uint32_t ckvm_io_count(const struct kvm_run *run) { return run->io.count; }
static inline uint64_t ckvm_io_data_offset(const struct kvm_run *run) { return run->io.data_offset; }
static inline uint64_t ckvm_mmio_address(const struct kvm_run *run) { return run->mmio.phys_addr; }
static inline uint32_t ckvm_mmio_length(const struct kvm_run *run) { return run->mmio.len; }
static inline uint8_t ckvm_mmio_is_write(const struct kvm_run *run) { return run->mmio.is_write; }
static inline uint8_t *ckvm_mmio_data(struct kvm_run *run) { return run->mmio.data; }
static inline uint32_t ckvm_internal_suberror(const struct kvm_run *run) { return run->internal.suberror; }
static inline uint64_t ckvm_fail_entry_reason(const struct kvm_run *run) {
    return run->fail_entry.hardware_entry_failure_reason;
}
static inline uint32_t ckvm_system_event_type(const struct kvm_run *run) { return run->system_event.type; }

// MARK: ordered accesses to guest memory shared with a driver (virtqueue indices and flags)
static inline uint16_t ckvm_load_acquire_u16(const void *address) {
    return __atomic_load_n((const uint16_t *)address, __ATOMIC_ACQUIRE);
}
static inline void ckvm_store_release_u16(void *address, uint16_t value) {
    __atomic_store_n((uint16_t *)address, value, __ATOMIC_RELEASE);
}
/// A full barrier: orders an earlier store (e.g. avail_event) before a later load (avail->idx).
static inline void ckvm_fence_seq_cst(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// MARK: io_uring (liburing), one ring per device queue
/// An io_uring instance; opaque to Swift.
typedef struct ckvm_uring ckvm_uring;
/// Creates a ring with `entries` submission slots; NULL with *error = errno on failure.
ckvm_uring *ckvm_uring_create(unsigned entries, int *error);
void ckvm_uring_destroy(ckvm_uring *ring);
/// Each prep call queues one operation tagged `user_data`; it returns -EBUSY when the submission
/// queue is full (nothing is submitted behind the caller's back).
/// readv (write == 0) or writev (write != 0) of `count` struct iovec at file `offset`.
int ckvm_uring_prep_rw(ckvm_uring *ring, int write, int fd, const void *iovecs, unsigned count, uint64_t offset, uint64_t user_data);
int ckvm_uring_prep_read(ckvm_uring *ring, int fd, void *buffer, unsigned length, uint64_t user_data);
int ckvm_uring_prep_fdatasync(ckvm_uring *ring, int fd, uint64_t user_data);
int ckvm_uring_prep_fallocate(ckvm_uring *ring, int fd, int mode, uint64_t offset, uint64_t length, uint64_t user_data);
/// Submits queued operations (EINTR retried): how many the kernel took, or -errno (EAGAIN, EBUSY
/// when it is short of resources or completions; what it did not take stays queued).
int ckvm_uring_submit(ckvm_uring *ring);
/// Operations queued and not yet taken by the kernel.
unsigned ckvm_uring_unsubmitted(ckvm_uring *ring);
/// Makes the kernel signal eventfd `fd` whenever a completion is posted, so a thread can sleep in
/// poll(2) on the ring together with other file descriptors. Returns 0 or -errno.
int ckvm_uring_register_eventfd(ckvm_uring *ring, int fd);
/// Completions waiting in the ring, read without a system call.
unsigned ckvm_uring_completions_ready(ckvm_uring *ring);
/// Takes one completion if there is one (returns 1), else returns 0; `wait` blocks for it, through
/// signals. Returns -errno when waiting failed otherwise.
int ckvm_uring_next_completion(ckvm_uring *ring, int wait, uint64_t *user_data, int32_t *result);
/// fallocate(2) modes for DISCARD (punch a hole) and WRITE_ZEROES.
int ckvm_falloc_punch_hole(void);
int ckvm_falloc_zero_range(void);

// MARK: TAP devices (linux/if_tun.h)
/// Opens one queue of TAP device `name` (created if absent) with IFF_TAP | IFF_NO_PI |
/// IFF_VNET_HDR | IFF_MULTI_QUEUE and a 12-byte virtio_net_hdr; returns the fd or -1 with errno.
int ckvm_tap_open(const char *name);
/// TUNSETOFFLOAD: which offloaded frames the TAP may hand us (the guest's receive offloads).
int ckvm_tap_set_offload(int fd, int checksum, int tso4, int tso6);
/// TUNSETSTEERINGEBPF: the TAP picks the queue for each frame it hands us by running socket
/// filter program `program_fd` (its return value modulo the queue count). Returns 0 or -1/errno.
int ckvm_tap_set_steering_program(int fd, int program_fd);

// MARK: eBPF (linux/bpf.h), for the TAP's flow steering
/// BPF_PROG_LOAD of a BPF_PROG_TYPE_SOCKET_FILTER program of `count` 8-byte instructions.
/// Returns the program fd, or -1 with errno and the verifier's log in `log` (NUL-terminated).
int ckvm_bpf_load_socket_filter(const void *instructions, uint32_t count, char *log, uint32_t log_size);
/// BPF_PROG_TEST_RUN: runs the program once on `frame` (an Ethernet frame); *result gets its
/// return value. Returns 0 or -1 with errno.
int ckvm_bpf_test_run(int program_fd, const void *frame, uint32_t length, uint32_t *result);

// MARK: syscalls without a Glibc wrapper
/// io_uring_setup(2) with 1 entry, immediately closed: tells whether the host allows io_uring.
/// Returns 0 when available, otherwise the errno io_uring_setup failed with.
int ckvm_probe_io_uring(void);
/// eventfd(2) with EFD_CLOEXEC (and EFD_NONBLOCK when asked), starting at 0.
int ckvm_eventfd(int nonblocking);
/// The calling thread's kernel thread ID (for /proc/self/task/<tid>).
int ckvm_thread_id(void);
/// Sets the calling thread's name (at most 15 bytes are kept).
int ckvm_set_thread_name(const char *name);
/// Pins the calling thread to one host CPU.
int ckvm_pin_thread(int cpu);
/// Restricts the calling thread to the `count` host CPUs listed.
int ckvm_set_thread_cpus(const int *cpus, int count);

#endif
