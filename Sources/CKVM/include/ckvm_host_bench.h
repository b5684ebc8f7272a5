// The host's own limit for `hvctl bench --peer host`: a plain C loop over io_uring, as the
// guidelines ask for the honest baseline (fio's clock calls cost too much on these hosts).
#ifndef CKVM_HOST_BENCH_H
#define CKVM_HOST_BENCH_H

#include <stdint.h>

struct ckvm_host_bench_result {
    uint64_t nanoseconds;  // from the first submission to the last completion
    uint64_t errors;       // requests that failed, or reads that did not match
    uint64_t writes;       // requests that were writes
    uint64_t completed;    // requests done (fewer than asked for when the time ran out)
};

/// `requests` random requests of `block_size` bytes (a multiple of 4096) within the first `blocks`
/// 4 KiB blocks of `fd`, through one io_uring from this thread, `qd` in flight (1 to 256):
/// `write_percent` percent of them writes of the pattern iobench checks (each 4 KiB block starts
/// with its 512-byte sector number), the rest reads, checked against it when `verify`. With
/// `duration_ns`, no request is issued after that long (`requests` is then a cap); the clock is
/// read once a round then, else only at the start and end. Returns 0, or -errno when the ring
/// could not be set up or waiting failed.
int ckvm_host_bench(int fd, uint64_t blocks, unsigned qd, uint64_t requests, uint64_t duration_ns,
                    unsigned block_size, unsigned write_percent, int verify, struct ckvm_host_bench_result *result);

#endif
