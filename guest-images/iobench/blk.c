/* The block workload: `qd` 4 KiB random reads in flight for `requests` completions, each checked
 * against the host's pattern (a block's first 8 bytes = its sector number). Closed loop by
 * default; with rate=N open loop, a new read every 1/N s while fewer than qd are outstanding. */
#include "blk.h"
#include "virtio.h"
#include "workloads.h"

#define MAX_QD 64
static struct vring ring;
static struct { u32 type, reserved; u64 sector; } headers[MAX_QD];
static volatile u8 statuses[MAX_QD];
static u8 buffers[MAX_QD][4096] __attribute__((aligned(4096)));
static u64 started_at[MAX_QD];
static struct virtqueue q;
static u64 blocks;
/* verify=0 (a null backend, whose reads return zeros): only the status is checked. */
static int verify = 1;
/* Request latencies of the last blk_run, log-linear: 8 buckets per power of two. */
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

u64 blk_latency_percentile(u64 per_mille, u64 completed) {
    u64 wanted = (completed * per_mille + 999) / 1000, seen = 0;
    for (u32 i = 0; i < 64 * 8; i++) {
        seen += histogram[i];
        if (seen >= wanted && seen > 0) return bucket_top(i);
    }
    return 0;
}

void blk_open(int irq, u32 msi_address, u32 msi_data, u64 qd) {
    if (qd < 1 || qd > MAX_QD) fail("qd out of range (1-64)");
    struct virtio_device dev;
    virtio_open(&dev, 0x1042, 0x1001, VIRTIO_F_VERSION_1);
    if (irq) virtio_enable_msix(&dev, msi_address, msi_data);
    virtio_queue(&dev, &q, 0, &ring, QSIZE_MAX, irq);
    if (q.size < 3 * qd) fail("queue too small for qd");
    virtio_driver_ok(&dev);

    blocks = MMIO(u64, dev.device_cfg) / 8;  /* capacity in 512-byte sectors */
    if (blocks == 0) fail("empty disk");
    for (u64 s = 0; s < qd; s++) {
        ring.desc[s * 3] = (struct desc){ (uintptr_t)&headers[s], 16, DESC_NEXT, (u16)(s * 3 + 1) };
        ring.desc[s * 3 + 1] = (struct desc){ (uintptr_t)buffers[s], 4096, DESC_NEXT | DESC_WRITE, (u16)(s * 3 + 2) };
        ring.desc[s * 3 + 2] = (struct desc){ (uintptr_t)&statuses[s], 1, DESC_WRITE, 0 };
    }
}

void blk_run(u64 qd, u64 total, u64 rate, u64 (*interrupts)(void), struct blk_reads *out) {
    u64 interval_ns = rate ? 1000000000ull / rate : 0;
    u64 submitted = 0, completed = 0, errors = 0, latency_sum = 0, latency_max = 0, kicks = q.kicks, late = 0;
    u64 taken = interrupts ? interrupts() : 0;
    u8 busy[MAX_QD] = {0};
    for (u32 i = 0; i < 64 * 8; i++) histogram[i] = 0;
    u64 t0 = now_ns(), next_due = t0;
    for (;;) {
        /* Fill free slots with new reads (open loop: only once each is due); one index update
         * publishes them all. */
        int added = 0;
        for (u64 s = 0; s < qd && submitted < total; s++) {
            if (busy[s]) continue;
            if (interval_ns) {
                if (now_ns() < next_due) break;
                next_due += interval_ns;
            }
            busy[s] = 1;
            headers[s].type = 0; headers[s].reserved = 0;
            headers[s].sector = (next_random() % blocks) * 8;
            statuses[s] = 0xFF;
            started_at[s] = now_ns();
            vq_add(&q, (u16)(s * 3));
            submitted++; added = 1;
        }
        if (added) vq_publish(&q);
        if (completed == total) break;
        /* Closed loop: wait for a completion (or its interrupt). Open loop: look, and go on submitting. */
        if (interrupts && !interval_ns) {
            u64 deadline = now_ns() + 10000000;
            while (interrupts() == taken && now_ns() < deadline) {}
            if (interrupts() == taken) late++;
            taken = interrupts();
        }
        while (!interval_ns && !vq_has_used(&q)) {}
        while (vq_has_used(&q)) {
            u32 id = vq_take(&q, 0);
            u64 s = id / 3;
            if (id % 3 || s >= qd || !busy[s]) fail("device returned an unknown chain");
            u64 latency = now_ns() - started_at[s];
            latency_sum += latency;
            if (latency > latency_max) latency_max = latency;
            histogram[bucket(latency)]++;
            if (statuses[s] != 0 || (verify && *(u64 *)buffers[s] != headers[s].sector)) errors++;
            busy[s] = 0; completed++;
        }
    }
    *out = (struct blk_reads){ completed, errors, q.kicks - kicks, now_ns() - t0, latency_sum, latency_max, late };
}

void blk_workload(int irq, u64 hold_ns) {
    u64 qd = arg("qd", 1), total = arg("requests", 20000), rate = arg("rate", 0);
    verify = arg("verify", 1) != 0;
    blk_open(irq, MSI_ADDRESS_CPU0, MSI_DATA_DEFAULT, qd);
    puts_serial("iobench: start\n");
    spin_ns(hold_ns);  /* the host samples KVM's counters at the mark */
    struct blk_reads r;
    blk_run(qd, total, rate, 0, &r);
    puts_serial("iobench: end\n");
    spin_ns(hold_ns);
    puts_serial("iobench: result test=blk");
    put_field("qd", qd); put_field("verify", (u64)verify); put_field("rate", rate); put_field("irq", (u64)irq); put_field("requests", r.completed);
    put_field("errors", r.errors); put_field("kicks", r.kicks);
    put_field("ns", r.ns); put_field("iops", r.ns ? r.completed * 1000000000ull / r.ns : 0);
    put_field("lat_avg_ns", r.completed ? r.latency_sum / r.completed : 0); put_field("lat_max_ns", r.latency_max);
    put_field("lat_p50_ns", blk_latency_percentile(500, r.completed)); put_field("lat_p99_ns", blk_latency_percentile(990, r.completed));
    puts_serial("\n");
}
