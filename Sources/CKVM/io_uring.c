// io_uring through liburing, whose API is mostly static inline.
#include "ckvm_io_uring.h"

#include <errno.h>
#include <linux/falloc.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int ckvm_probe_io_uring(void) {
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    long fd = syscall(__NR_io_uring_setup, 1, &params);
    if (fd < 0) return errno;
    close((int)fd);
    return 0;
}

struct ckvm_uring {
    struct io_uring ring;
    /// The file registered as fixed file 0, or -1.
    int fixed_fd;
};

ckvm_uring *ckvm_uring_create(unsigned entries, int *error) {
    ckvm_uring *ring = calloc(1, sizeof *ring);
    if (!ring) { *error = ENOMEM; return NULL; }
    ring->fixed_fd = -1;
    // Cooperative task running: completions that need task work (io-wq's) wait for our next
    // io_uring call instead of interrupting the side core; the task-run flag makes liburing's
    // peek enter the kernel for them, since a polling side core may make no other call. Kernels
    // before 5.19 refuse the flags.
    unsigned flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    int result = io_uring_queue_init(entries, &ring->ring, flags);
    if (result == -EINVAL) result = io_uring_queue_init(entries, &ring->ring, 0);
    if (result < 0) { free(ring); *error = -result; return NULL; }
    return ring;
}

int ckvm_uring_register_file(ckvm_uring *ring, int fd) {
    int result = io_uring_register_files(&ring->ring, &fd, 1);
    if (result == 0) ring->fixed_fd = fd;
    return result;
}

/// Points `sqe` at `fd`: the registered slot when it is the registered file.
static void set_file(ckvm_uring *ring, struct io_uring_sqe *sqe, int fd) {
    if (fd >= 0 && fd == ring->fixed_fd) {
        sqe->fd = 0;
        sqe->flags |= IOSQE_FIXED_FILE;
    }
}

void ckvm_uring_destroy(ckvm_uring *ring) {
    // Unregistered here, on our thread, so the file is let go of before we return: the ring's own
    // teardown runs later in a kernel worker, and the disk's OFD lock would outlive the VM.
    if (ring->fixed_fd >= 0) io_uring_unregister_files(&ring->ring);
    io_uring_queue_exit(&ring->ring);
    free(ring);
}

/// A free submission entry, or NULL when the queue is full. The caller bounds what it has in
/// flight by the ring's size, so a full queue means a bug of ours, reported, never waited on.
static struct io_uring_sqe *next_sqe(ckvm_uring *ring) { return io_uring_get_sqe(&ring->ring); }

int ckvm_uring_prep_rw(ckvm_uring *ring, int write, int fd, const void *iovecs, unsigned count, uint64_t offset,
                       uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(ring);
    if (!sqe) return -EBUSY;
    if (write) {
        io_uring_prep_writev(sqe, fd, iovecs, count, offset);
    } else {
        io_uring_prep_readv(sqe, fd, iovecs, count, offset);
    }
    set_file(ring, sqe, fd);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int ckvm_uring_prep_fdatasync(ckvm_uring *ring, int fd, uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
    set_file(ring, sqe, fd);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int ckvm_uring_prep_fallocate(ckvm_uring *ring, int fd, int mode, uint64_t offset, uint64_t length,
                              uint64_t user_data) {
    struct io_uring_sqe *sqe = next_sqe(ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_fallocate(sqe, fd, mode, offset, length);
    set_file(ring, sqe, fd);
    io_uring_sqe_set_data64(sqe, user_data);
    return 0;
}

int ckvm_uring_submit(ckvm_uring *ring) {
    int result;
    do {
        result = io_uring_submit(&ring->ring);
    } while (result == -EINTR);
    return result;
}

unsigned ckvm_uring_unsubmitted(ckvm_uring *ring) { return io_uring_sq_ready(&ring->ring); }

int ckvm_uring_fd(ckvm_uring *ring) { return ring->ring.ring_fd; }

unsigned ckvm_uring_completions_ready(ckvm_uring *ring) { return io_uring_cq_ready(&ring->ring); }

int ckvm_uring_next_completion(ckvm_uring *ring, int wait, uint64_t *user_data, int32_t *result) {
    struct io_uring_cqe *cqe = NULL;
    int status;
    do {
        // A signal (vCPU threads are kicked with SIGUSR1, without SA_RESTART) is not a completion.
        status = wait ? io_uring_wait_cqe(&ring->ring, &cqe) : io_uring_peek_cqe(&ring->ring, &cqe);
    } while (wait && status == -EINTR);
    if (status < 0 || !cqe) return status < 0 ? status : 0;
    *user_data = io_uring_cqe_get_data64(cqe);
    *result = cqe->res;
    io_uring_cqe_seen(&ring->ring, cqe);
    return 1;
}

int ckvm_falloc_punch_hole(void) { return FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE; }
int ckvm_falloc_zero_range(void) { return FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE; }
