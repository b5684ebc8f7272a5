/* Request latencies of the last run, log-linear: 8 buckets per power of two (latency_histogram.h). */
#include "latency_histogram.h"

static u64 histogram[64 * 8];

static u32 bucket(u64 ns) {
    if (ns < 8) return (u32)ns;
    u32 exponent = 63 - (u32)__builtin_clzll(ns);
    return exponent * 8 + (u32)((ns >> (exponent - 3)) & 7);
}

/* The largest latency bucket `index` holds. */
static u64 bucket_top(u32 index) {
    if (index < 8) return index;
    u32 exponent = index / 8, step = index % 8;
    return ((8ull + step + 1) << (exponent - 3)) - 1;
}

void histogram_reset(void) {
    for (u32 i = 0; i < 64 * 8; i++) histogram[i] = 0;
}

void histogram_record(u64 ns) { histogram[bucket(ns)]++; }

u64 histogram_percentile(u64 per_mille, u64 completed) {
    u64 wanted = (completed * per_mille + 999) / 1000, seen = 0;
    for (u32 i = 0; i < 64 * 8; i++) {
        seen += histogram[i];
        if (seen >= wanted && seen > 0) return bucket_top(i);
    }
    return 0;
}

void histogram_print(void) {
    puts_serial("iobench: histogram");
    for (u32 i = 0; i < 64 * 8; i++) {
        if (!histogram[i]) continue;
        puts_serial(" b"); put_u64(i); puts_serial("="); put_u64(histogram[i]);
    }
    puts_serial("\n");
}
