/* The block workload: `qd` 4 KiB random reads in flight for `requests` completions, each checked
 * against the host's pattern (a block's first 8 bytes = its sector number). Closed loop by
 * default; with rate=N open loop, a new read every 1/N s while fewer than qd are outstanding. */
#include "virtio.h"
#include "workloads.h"

#define MAX_QD 64
static struct vring ring;
static struct { u32 type, reserved; u64 sector; } headers[MAX_QD];
static volatile u8 statuses[MAX_QD];
static u8 buffers[MAX_QD][4096] __attribute__((aligned(4096)));
static u64 started_at[MAX_QD];

void blk_workload(int irq, u64 hold_ns) {
    u64 qd = arg("qd", 1), total = arg("requests", 20000), rate = arg("rate", 0);
    u64 interval_ns = rate ? 1000000000ull / rate : 0;
    if (qd < 1 || qd > MAX_QD) fail("qd out of range (1-64)");

    struct virtio_device dev;
    struct virtqueue q;
    virtio_open(&dev, 0x1042, 0x1001, VIRTIO_F_VERSION_1);
    if (irq) virtio_enable_msix(&dev);
    virtio_queue(&dev, &q, 0, &ring, QSIZE_MAX, irq);
    if (q.size < 3 * qd) fail("queue too small for qd");
    virtio_driver_ok(&dev);

    u64 blocks = MMIO(u64, dev.device_cfg) / 8;  /* capacity in 512-byte sectors */
    if (blocks == 0) fail("empty disk");
    for (u64 s = 0; s < qd; s++) {
        ring.desc[s * 3] = (struct desc){ (uintptr_t)&headers[s], 16, DESC_NEXT, (u16)(s * 3 + 1) };
        ring.desc[s * 3 + 1] = (struct desc){ (uintptr_t)buffers[s], 4096, DESC_NEXT | DESC_WRITE, (u16)(s * 3 + 2) };
        ring.desc[s * 3 + 2] = (struct desc){ (uintptr_t)&statuses[s], 1, DESC_WRITE, 0 };
    }

    puts_serial("iobench: start\n");
    spin_ns(hold_ns);  /* the host samples KVM's counters at the mark */
    u64 submitted = 0, completed = 0, errors = 0, latency_sum = 0, latency_max = 0;
    u8 busy[MAX_QD] = {0};
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
        /* Closed loop: wait for a completion. Open loop: look, and go on submitting. */
        while (!interval_ns && !vq_has_used(&q)) {}
        while (vq_has_used(&q)) {
            u32 id = vq_take(&q, 0);
            u64 s = id / 3;
            if (id % 3 || s >= qd || !busy[s]) fail("device returned an unknown chain");
            u64 latency = now_ns() - started_at[s];
            latency_sum += latency;
            if (latency > latency_max) latency_max = latency;
            if (statuses[s] != 0 || *(u64 *)buffers[s] != headers[s].sector) errors++;
            busy[s] = 0; completed++;
        }
    }
    u64 elapsed = now_ns() - t0;
    puts_serial("iobench: end\n");
    spin_ns(hold_ns);
    puts_serial("iobench: result test=blk");
    put_field("qd", qd); put_field("rate", rate); put_field("irq", (u64)irq); put_field("requests", completed);
    put_field("errors", errors); put_field("kicks", q.kicks);
    put_field("ns", elapsed); put_field("iops", elapsed ? completed * 1000000000ull / elapsed : 0);
    put_field("lat_avg_ns", completed ? latency_sum / completed : 0); put_field("lat_max_ns", latency_max);
    puts_serial("\n");
}
