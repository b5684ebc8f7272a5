// The host's own limit for `hvctl bench --peer host`: a plain C loop over io_uring, as the
// guidelines ask for the honest baseline (fio's clock calls cost too much on these hosts).
#ifndef CKVM_HOST_BENCH_H
#define CKVM_HOST_BENCH_H

#include <stdint.h>

/// `requests` random 4 KiB reads of the first `blocks` 4 KiB blocks of `fd` through one io_uring
/// from this thread, `qd` in flight (1 to 256), each checked as iobench checks it (a block's first
/// 8 bytes are its 512-byte sector number) when `verify`. The clock is read only at the start and
/// end: `*nanoseconds` is the elapsed time, `*errors` the reads that failed or did not match.
/// Returns 0, or -errno when the ring could not be set up or waiting failed.
int ckvm_host_bench_reads(int fd, uint64_t blocks, unsigned qd, uint64_t requests, int verify,
                          uint64_t *nanoseconds, uint64_t *errors);

#endif
