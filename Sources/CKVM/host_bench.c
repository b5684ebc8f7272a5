// The host's own io_uring read loop (see ckvm_host_bench.h).
#include "ckvm_host_bench.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

// xorshift64: the same cheap generator whatever the libc, so every run reads the same blocks.
static uint64_t next_random(uint64_t *state) {
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

int ckvm_host_bench_reads(int fd, uint64_t blocks, unsigned qd, uint64_t requests, int verify,
                          uint64_t *nanoseconds, uint64_t *errors) {
    if (qd < 1 || qd > 256 || blocks == 0) return -EINVAL;
    struct io_uring ring;
    int status = io_uring_queue_init(qd, &ring, 0);
    if (status < 0) return status;
    unsigned char *buffers = aligned_alloc(4096, (size_t)qd * 4096);
    uint64_t *offsets = calloc(qd, sizeof *offsets);
    if (!buffers || !offsets) {
        free(buffers);
        free(offsets);
        io_uring_queue_exit(&ring);
        return -ENOMEM;
    }
    uint64_t state = 0x9E3779B97F4A7C15ull, issued = 0, completed = 0, failed = 0;
    uint64_t started = now_ns();
    for (unsigned slot = 0; slot < qd && issued < requests; slot++, issued++) {
        offsets[slot] = (next_random(&state) % blocks) * 4096;
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        io_uring_prep_read(sqe, fd, buffers + (size_t)slot * 4096, 4096, offsets[slot]);
        sqe->user_data = slot;
    }
    io_uring_submit(&ring);
    // Each round: wait for one completion, take every other ready one, refill, submit once.
    while (completed < requests) {
        struct io_uring_cqe *cqe;
        status = io_uring_wait_cqe(&ring, &cqe);
        if (status == -EINTR) continue;
        if (status < 0) break;
        unsigned refilled = 0;
        do {
            unsigned slot = (unsigned)cqe->user_data;
            uint64_t sector = 0;
            memcpy(&sector, buffers + (size_t)slot * 4096, sizeof sector);
            if (cqe->res != 4096 || (verify && sector != offsets[slot] / 512)) failed++;
            io_uring_cqe_seen(&ring, cqe);
            completed++;
            if (issued < requests) {
                offsets[slot] = (next_random(&state) % blocks) * 4096;
                struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
                io_uring_prep_read(sqe, fd, buffers + (size_t)slot * 4096, 4096, offsets[slot]);
                sqe->user_data = slot;
                issued++;
                refilled++;
            }
        } while (io_uring_peek_cqe(&ring, &cqe) == 0);
        if (refilled) io_uring_submit(&ring);
    }
    *nanoseconds = now_ns() - started;
    *errors = failed + (requests - completed);
    free(buffers);
    free(offsets);
    io_uring_queue_exit(&ring);
    return status < 0 ? status : 0;
}
