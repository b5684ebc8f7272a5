/* The block workload: `qd` random requests of `bs` bytes (4 KiB by default) in flight for
 * `requests` completions: reads, each checked against the host's pattern (every 4 KiB block's first
 * 8 bytes = its sector number), and with write_pct=P that percentage of writes, which write the
 * pattern back (so a later read still verifies). With duration_ms=T, requests stop being issued
 * after T ms (`requests` is then a cap). Closed loop by default; with rate=N open loop, a new
 * request every 1/N s while fewer than qd are outstanding. */
#include "blk.h"
#include "latency_histogram.h"
#include "virtio.h"
#include "workloads.h"

#define MAX_QD 64
#define MAX_BS (128 * 1024)
static struct vring ring;
static struct { u32 type, reserved; u64 sector; } headers[MAX_QD];
static volatile u8 statuses[MAX_QD];
static u8 buffers[MAX_QD][MAX_BS] __attribute__((aligned(4096)));
static u64 started_at[MAX_QD];
static struct virtqueue q;
static u64 blocks;
/* verify=0 (a null backend, whose reads return zeros): only the status is checked. */
static int verify = 1;
static u64 block_size = 4096, write_percent = 0, duration_ns = 0;
void blk_set_workload(u64 bs, u64 write_pct, u64 duration_ms) {
    if (bs < 4096 || bs > MAX_BS || bs % 4096) fail("bs out of range (4096-131072, a multiple of 4096)");
    if (write_pct > 100) fail("write_pct out of range (0-100)");
    if (duration_ms > 3600000) fail("duration_ms out of range (0-3600000)");
    block_size = bs;
    write_percent = write_pct;
    duration_ns = duration_ms * 1000000;
}

void blk_open(int irq, u32 msi_address, u32 msi_data, u64 qd) {
    if (qd < 1 || qd > MAX_QD) fail("qd out of range (1-64)");
    struct virtio_device dev;
    /* FLUSH, as Linux's driver takes it: without it a device must assume nobody can flush its
     * cache (QEMU then writes through, syncing each write), and the write workloads would compare
     * a write-back device with a write-through one. */
    virtio_open(&dev, 0x1042, 0x1001, VIRTIO_F_VERSION_1, VIRTIO_BLK_F_FLUSH);
    if (irq) virtio_enable_msix(&dev, msi_address, msi_data);
    virtio_queue(&dev, &q, 0, &ring, QSIZE_MAX, irq);
    if (q.size < 3 * qd) fail("queue too small for qd");
    virtio_driver_ok(&dev);

    blocks = MMIO(u64, dev.device_cfg) / 8;  /* capacity in 512-byte sectors */
    if (blocks < block_size / 4096) fail("disk smaller than one request");
    for (u64 s = 0; s < qd; s++) {
        ring.desc[s * 3] = (struct desc){ (uintptr_t)&headers[s], 16, DESC_NEXT, (u16)(s * 3 + 1) };
        ring.desc[s * 3 + 1] = (struct desc){ (uintptr_t)buffers[s], (u32)block_size, DESC_NEXT | DESC_WRITE, (u16)(s * 3 + 2) };
        ring.desc[s * 3 + 2] = (struct desc){ (uintptr_t)&statuses[s], 1, DESC_WRITE, 0 };
    }
}

void blk_run(u64 qd, u64 total, u64 rate, u64 (*interrupts)(void), struct blk_reads *out) {
    u64 interval_ns = rate ? 1000000000ull / rate : 0;
    u64 submitted = 0, completed = 0, errors = 0, writes = 0, latency_sum = 0, latency_max = 0, kicks = q.kicks, late = 0;
    u64 pages = block_size / 4096;
    u64 taken = interrupts ? interrupts() : 0;
    u8 busy[MAX_QD] = {0};
    u64 t0 = now_ns(), next_due = t0;
    for (;;) {
        /* A timed run: no new request once the time is up; those in flight finish. */
        if (duration_ns && submitted < total && now_ns() - t0 >= duration_ns) total = submitted;
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
            u64 sector = (next_random() % (blocks - pages + 1)) * 8;
            int write = write_percent && next_random() % 100 < write_percent;
            headers[s].type = write ? 1 : 0; headers[s].reserved = 0;
            headers[s].sector = sector;
            ring.desc[s * 3 + 1].flags = write ? DESC_NEXT : DESC_NEXT | DESC_WRITE;
            if (write) {
                for (u64 p = 0; p < pages; p++) *(u64 *)(buffers[s] + p * 4096) = sector + p * 8;
                writes++;
            }
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
            histogram_record(latency);
            int wrong = statuses[s] != 0;
            if (verify && headers[s].type == 0)
                for (u64 p = 0; p < pages; p++) wrong |= *(u64 *)(buffers[s] + p * 4096) != headers[s].sector + p * 8;
            errors += (u64)wrong;
            busy[s] = 0; completed++;
        }
    }
    *out = (struct blk_reads){ completed, errors, q.kicks - kicks, now_ns() - t0, latency_sum, latency_max, late, writes };
}

void blk_workload(int irq, u64 hold_ns) {
    u64 qd = arg("qd", 1), total = arg("requests", 20000), rate = arg("rate", 0);
    verify = arg("verify", 1) != 0;
    blk_set_workload(arg("bs", 4096), arg("write_pct", 0), arg("duration_ms", 0));
    blk_open(irq, MSI_ADDRESS_CPU0, MSI_DATA_DEFAULT, qd);
    puts_serial("iobench: start\n");
    spin_ns(hold_ns);  /* the host samples KVM's counters at the mark */
    struct blk_reads r;
    histogram_reset();
    blk_run(qd, total, rate, 0, &r);
    puts_serial("iobench: end\n");
    spin_ns(hold_ns);
    histogram_print();
    puts_serial("iobench: result test=blk");
    put_field("qd", qd); put_field("verify", (u64)verify); put_field("rate", rate); put_field("irq", (u64)irq); put_field("requests", r.completed);
    put_field("bs", block_size); put_field("write_pct", write_percent); put_field("duration_ms", duration_ns / 1000000); put_field("writes", r.writes);
    put_field("errors", r.errors); put_field("kicks", r.kicks);
    put_field("ns", r.ns); put_field("iops", r.ns ? r.completed * 1000000000ull / r.ns : 0);
    put_field("lat_avg_ns", r.completed ? r.latency_sum / r.completed : 0); put_field("lat_max_ns", r.latency_max);
    put_field("lat_p50_ns", histogram_percentile(500, r.completed)); put_field("lat_p99_ns", histogram_percentile(990, r.completed));
    puts_serial("\n");
}
