// io_uring (liburing), one ring per device queue; liburing's headers clash with Glibc's module.
// Every function returns what ioctl()/syscall() returns (-1 with errno set on failure) unless it says otherwise.
#ifndef CKVM_IO_URING_H
#define CKVM_IO_URING_H

#include <stdint.h>

/// io_uring_setup(2) with 1 entry, immediately closed: tells whether the host allows io_uring.
/// Returns 0 when available, otherwise the errno io_uring_setup failed with.
int ckvm_probe_io_uring(void);
/// An io_uring instance; opaque to Swift.
typedef struct ckvm_uring ckvm_uring;
/// Creates a ring with `entries` submission slots; NULL with *error = errno on failure.
ckvm_uring *ckvm_uring_create(unsigned entries, int *error);
void ckvm_uring_destroy(ckvm_uring *ring);
/// Registers `fd` with the ring: operations on it then skip the kernel's per-request file lookup
/// and reference count (an atomic in a threaded process). Returns 0 or -errno; without it the
/// operations use the descriptor as is.
int ckvm_uring_register_file(ckvm_uring *ring, int fd);
/// Each prep call queues one operation tagged `user_data`; it returns -EBUSY when the submission
/// queue is full (nothing is submitted behind the caller's back).
/// readv (write == 0) or writev (write != 0) of `count` struct iovec at file `offset`.
int ckvm_uring_prep_rw(ckvm_uring *ring, int write, int fd, const void *iovecs, unsigned count, uint64_t offset,
                       uint64_t user_data);
int ckvm_uring_prep_fdatasync(ckvm_uring *ring, int fd, uint64_t user_data);
int ckvm_uring_prep_fallocate(ckvm_uring *ring, int fd, int mode, uint64_t offset, uint64_t length, uint64_t user_data);
/// Submits queued operations (EINTR retried): how many the kernel took, or -errno (EAGAIN, EBUSY
/// when it is short of resources or completions; what it did not take stays queued).
int ckvm_uring_submit(ckvm_uring *ring);
/// Operations queued and not yet taken by the kernel.
unsigned ckvm_uring_unsubmitted(ckvm_uring *ring);
/// The ring's own descriptor: poll(2) finds it readable while completions wait in the ring, so a
/// thread can sleep on it together with other descriptors. Level-triggered and checked by the
/// kernel under its wait-queue ordering, and nothing is signalled per completion unless a thread
/// sleeps on it (an eventfd registered with the ring is signalled for every completion).
int ckvm_uring_fd(ckvm_uring *ring);
/// Completions waiting in the ring, read without a system call.
unsigned ckvm_uring_completions_ready(ckvm_uring *ring);
/// Takes one completion if there is one (returns 1), else returns 0; `wait` blocks for it, through
/// signals. Returns -errno when waiting failed otherwise.
int ckvm_uring_next_completion(ckvm_uring *ring, int wait, uint64_t *user_data, int32_t *result);
/// fallocate(2) modes for DISCARD (punch a hole) and WRITE_ZEROES.
int ckvm_falloc_punch_hole(void);
int ckvm_falloc_zero_range(void);

#endif
