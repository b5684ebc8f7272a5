/* The latency histogram a workload keeps and hands over (latency_histogram.c): log-linear, 8 buckets
 * per power of two, so the host can merge runs and read percentiles within 12.5%. */
#pragma once
#include "platform.h"

/* Empties it, before a run. */
void histogram_reset(void);
/* Counts one request that took `ns`. */
void histogram_record(u64 ns);
/* The latency below which `per_mille`/1000 of `completed` requests finished (the top of its
 * bucket: within 12.5%). */
u64 histogram_percentile(u64 per_mille, u64 completed);
/* Hands it over: one "iobench: histogram bI=N ..." line with every non-empty bucket I (below 8:
 * I ns; above, 8 buckets per power of two: bucket 8e+s holds [(8+s) << (e-3), (9+s) << (e-3)) ns). */
void histogram_print(void);
