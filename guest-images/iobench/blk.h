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
 * within 10 ms counts as late and the ring is looked at anyway. Each latency goes into the
 * histogram (latency_histogram.h), which the caller empties first. */
void blk_run(u64 qd, u64 total, u64 rate, u64 (*interrupts)(void), struct blk_reads *out);
