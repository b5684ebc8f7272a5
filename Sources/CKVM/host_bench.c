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

// Fills slot `slot` with a new request and queues it: a write of the pattern (each 4 KiB block
// starts with its sector number) for `write_percent` percent of them, else a read.
static void queue_request(struct io_uring *ring, int fd, unsigned char *buffers, uint64_t *offsets,
                          unsigned char *writes, unsigned slot, uint64_t blocks, unsigned block_size,
                          unsigned write_percent, int fixed, uint64_t *state) {
    unsigned pages = block_size / 4096;
    offsets[slot] = (next_random(state) % (blocks - pages + 1)) * 4096;
    unsigned char *buffer = buffers + (size_t)slot * block_size;
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    writes[slot] = write_percent && next_random(state) % 100 < write_percent;
    if (writes[slot]) {
        for (unsigned page = 0; page < pages; page++) {
            uint64_t sector = offsets[slot] / 512 + page * 8;
            memcpy(buffer + (size_t)page * 4096, &sector, sizeof sector);
        }
        io_uring_prep_write(sqe, fd, buffer, block_size, offsets[slot]);
    } else {
        io_uring_prep_read(sqe, fd, buffer, block_size, offsets[slot]);
    }
    if (fixed) {
        sqe->fd = 0;
        sqe->flags |= IOSQE_FIXED_FILE;
    }
    sqe->user_data = slot;
}

// A read's data is right when each 4 KiB block starts with its sector number.
static int read_matches(const unsigned char *buffer, uint64_t offset, unsigned block_size) {
    for (unsigned page = 0; page < block_size / 4096; page++) {
        uint64_t sector = 0;
        memcpy(&sector, buffer + (size_t)page * 4096, sizeof sector);
        if (sector != offset / 512 + page * 8) return 0;
    }
    return 1;
}

int ckvm_host_bench(int fd, uint64_t blocks, unsigned qd, uint64_t requests, uint64_t duration_ns,
                    unsigned block_size, unsigned write_percent, int verify, struct ckvm_host_bench_result *result) {
    if (qd < 1 || qd > 256 || block_size < 4096 || block_size % 4096 || write_percent > 100 ||
        blocks < block_size / 4096)
        return -EINVAL;
    struct io_uring ring;
    // Set up as hvctl's block queues set up theirs (IOUringBlockBackend), so the limit is comparable.
    int status = io_uring_queue_init(qd, &ring, IORING_SETUP_COOP_TASKRUN);
    if (status == -EINVAL) status = io_uring_queue_init(qd, &ring, 0);
    if (status < 0) return status;
    int fixed = io_uring_register_files(&ring, &fd, 1) == 0;
    unsigned char *buffers = aligned_alloc(4096, (size_t)qd * block_size);
    uint64_t *offsets = calloc(qd, sizeof *offsets);
    unsigned char *writes = calloc(qd, 1);
    if (!buffers || !offsets || !writes) {
        free(buffers);
        free(offsets);
        free(writes);
        io_uring_queue_exit(&ring);
        return -ENOMEM;
    }
    uint64_t state = 0x9E3779B97F4A7C15ull, issued = 0, completed = 0, failed = 0, written = 0;
    uint64_t started = now_ns();
    for (unsigned slot = 0; slot < qd && issued < requests; slot++, issued++)
        queue_request(&ring, fd, buffers, offsets, writes, slot, blocks, block_size, write_percent, fixed, &state);
    io_uring_submit(&ring);
    // Each round: wait for one completion, take every other ready one, refill, submit once.
    while (completed < requests) {
        struct io_uring_cqe *cqe;
        status = io_uring_wait_cqe(&ring, &cqe);
        if (status == -EINTR) continue;
        if (status < 0) break;
        // A timed run reads the clock once a round: no new request once the time is up.
        if (duration_ns && issued < requests && now_ns() - started >= duration_ns) requests = issued;
        unsigned refilled = 0;
        do {
            unsigned slot = (unsigned)cqe->user_data;
            int wrong = cqe->res != (int)block_size;
            if (!writes[slot] && verify)
                wrong |= !read_matches(buffers + (size_t)slot * block_size, offsets[slot], block_size);
            failed += (uint64_t)wrong;
            written += writes[slot];
            io_uring_cqe_seen(&ring, cqe);
            completed++;
            if (issued < requests) {
                queue_request(&ring, fd, buffers, offsets, writes, slot, blocks, block_size, write_percent,
                              fixed, &state);
                issued++;
                refilled++;
            }
        } while (io_uring_peek_cqe(&ring, &cqe) == 0);
        if (refilled) io_uring_submit(&ring);
    }
    result->nanoseconds = now_ns() - started;
    result->errors = failed + (requests - completed);
    result->writes = written;
    result->completed = completed;
    free(buffers);
    free(offsets);
    free(writes);
    io_uring_queue_exit(&ring);
    return status < 0 ? status : 0;
}
