/* The block driver the block workloads share (blk.c): one queue of random reads (and writes). */
#pragma once
#include "platform.h"

struct blk_reads { u64 completed, errors, kicks, ns, latency_sum, latency_max, late_interrupts, writes; };

/* Before blk_open: requests of `bs` bytes (4096 to 131072, a multiple of 4096; default 4096),
 * `write_pct` percent of them writes of the pattern (default 0); with `duration_ms`, blk_run stops
 * issuing requests after that long (0: only its count ends it). */
void blk_set_workload(u64 bs, u64 write_pct, u64 duration_ms);

/* Opens the first virtio-blk device with one queue for up to `qd` reads in flight; with `irq`,
 * MSI-X vector 0 carries the MSI message (msi_address, msi_data) and completions interrupt. */
void blk_open(int irq, u32 msi_address, u32 msi_data, u64 qd);
/* `total` random reads, `qd` in flight (closed loop, or open loop at `rate` per second), each
 * checked against the host's pattern (a block's first 8 bytes = its sector number). With
 * `interrupts` (closed loop), a completion is only looked for once the count it points to (the
 * interrupts taken) has grown, as an interrupt-driven driver would; one that has not grown
 * within 10 ms counts as late and the ring is looked at anyway. */
void blk_run(u64 qd, u64 total, u64 rate, u64 (*interrupts)(void), struct blk_reads *out);
/* The latency below which `per_mille`/1000 of the last blk_run's `completed` reads finished (the
 * top of its log-linear bucket: within 12.5%). */
u64 blk_latency_percentile(u64 per_mille, u64 completed);
/* Hands the last blk_run's latency histogram over: one "iobench: histogram bI=N ..." line with
 * every non-empty bucket I (below 8: I ns; above, 8 buckets per power of two: bucket 8e+s holds
 * [(8+s) << (e-3), (9+s) << (e-3)) ns). */
void blk_print_histogram(void);
