/* iobench: a polled virtio-blk driver that runs at CPL3 (see entry.S), for measuring a VMM's
 * block request path without guest-kernel costs. It finds the virtio-blk PCI function (modern
 * virtio-pci), sets up one split virtqueue with interrupts off (no MSI-X vector, NO_INTERRUPT),
 * and keeps `qd` 4 KiB random reads in flight for `requests` completions, polling the used ring.
 * It kicks only when the device has not set VRING_USED_F_NO_NOTIFY, as a Linux driver does, and
 * checks every block read against the pattern the host wrote (its first 8 bytes = its sector).
 * Command line: qd=N requests=N (defaults 1 and 20000); rate=N makes the load open-loop: a new
 * read every 1/N s while fewer than qd are outstanding, instead of one as soon as one completes;
 * irq=1 asks for completion interrupts
 * (MSI-X vector 0 on the queue, NO_INTERRUPT clear): the VMM raises them as for any driver, and
 * they stay pending in the local APIC since this CPU runs with interrupts off and keeps polling,
 * so the VMM's interrupt work (and coalescing) is measured without a guest handler's cost;
 * hold_ms=N is how long the guest waits at each mark (default 300). Output on COM1: marks the
 * host samples KVM's counters at, then one result line; then ACPI power-off (FADT:
 * hardware-reduced sleep control register, or PM1a control). */
#include <stdint.h>

typedef uint8_t u8; typedef uint16_t u16; typedef uint32_t u32; typedef uint64_t u64;

/* ---- port I/O (IOPL 3), MMIO, time ---- */
static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
#define barrier() __asm__ volatile("" ::: "memory")
#define full_fence() __asm__ volatile("mfence" ::: "memory")
#define MMIO(type, addr) (*(volatile type *)(uintptr_t)(addr))
static inline u64 rdtsc(void) { u32 lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((u64)hi << 32) | lo; }

struct pvclock { u32 version, pad0; u64 tsc_timestamp, system_time; u32 mul; int8_t shift; u8 flags, pad[2]; };
extern volatile struct pvclock pvclock;

/* kvm-clock nanoseconds: the host's record plus the TSC delta scaled as it says. */
static u64 now_ns(void) {
    u32 version; u64 ns;
    do {
        version = pvclock.version;
        barrier();
        u64 delta = rdtsc() - pvclock.tsc_timestamp;
        int8_t shift = pvclock.shift;
        if (shift < 0) delta >>= -shift; else delta <<= shift;
        ns = pvclock.system_time + (u64)(((unsigned __int128)delta * pvclock.mul) >> 32);
        barrier();
    } while ((version & 1) || version != pvclock.version);
    return ns;
}

static void spin_ns(u64 ns) { u64 end = now_ns() + ns; while (now_ns() < end) {} }

/* ---- console ---- */
static void putc_serial(char c) {
    while (!(inb(0x3FD) & 0x20)) {}
    outb(0x3F8, (u8)c);
}
static void puts_serial(const char *s) { while (*s) { if (*s == '\n') putc_serial('\r'); putc_serial(*s++); } }
static void put_u64(u64 v) {
    char buf[24]; int i = 23; buf[i] = 0;
    do { buf[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    puts_serial(buf + i);
}
static void put_field(const char *name, u64 v) { puts_serial(" "); puts_serial(name); puts_serial("="); put_u64(v); }

static void power_off(void);
static void fail(const char *why) {
    puts_serial("iobench: error "); puts_serial(why); puts_serial("\n");
    power_off();
}

/* ---- ACPI power-off ---- */
struct start_info { u32 magic, version, flags, nr_modules; u64 modlist, cmdline, rsdp, memmap; u32 memmap_entries; };
static u64 rsdp_address;

static int sig_is(u64 addr, const char *sig, int n) {
    for (int i = 0; i < n; i++) if (MMIO(u8, addr + i) != (u8)sig[i]) return 0;
    return 1;
}
static u64 find_table(const char *sig) {
    if (!rsdp_address) return 0;
    int xsdt = MMIO(u8, rsdp_address + 15) >= 2 && MMIO(u64, rsdp_address + 24);
    u64 root = xsdt ? MMIO(u64, rsdp_address + 24) : MMIO(u32, rsdp_address + 16);
    u32 length = MMIO(u32, root + 4), width = xsdt ? 8 : 4;
    for (u32 off = 36; off + width <= length; off += width) {
        u64 table = xsdt ? MMIO(u64, root + off) : MMIO(u32, root + off);
        if (sig_is(table, sig, 4)) return table;
    }
    return 0;
}
static void power_off(void) {
    u64 fadt = find_table("FACP");
    if (fadt) {
        u32 length = MMIO(u32, fadt + 4), flags = MMIO(u32, fadt + 112);
        if ((flags & (1u << 20)) && length >= 256 && MMIO(u8, fadt + 244) == 1) {  /* HW-reduced, I/O space */
            outb((u16)MMIO(u64, fadt + 248), (5 << 2) | 0x20);                      /* SLP_TYP 5 | SLP_EN */
        }
        u32 pm1a = MMIO(u32, fadt + 64);
        if (pm1a) {
            /* \_S5's SLP_TYP from the DSDT ("_S5_" Package); QEMU's is 0. */
            u64 dsdt = MMIO(u32, fadt + 40); u16 slp_typ = 0;
            u32 dlen = dsdt ? MMIO(u32, dsdt + 4) : 0;
            for (u32 i = 36; i + 8 < dlen; i++) {
                if (sig_is(dsdt + i, "_S5_", 4) && MMIO(u8, dsdt + i + 4) == 0x12) {
                    u8 first = MMIO(u8, dsdt + i + 7);
                    slp_typ = first == 0x0A ? MMIO(u8, dsdt + i + 8) : (first <= 1 ? first : 0);
                    break;
                }
            }
            outw((u16)pm1a, (u16)((slp_typ << 10) | 0x2000));
        }
    }
    puts_serial("iobench: no way to power off\n");
    for (;;) {}
}

/* ---- PCI (configuration mechanism #1) ---- */
static u32 pci_read(u32 dev, u32 reg) { outl(0xCF8, 0x80000000u | (dev << 11) | (reg & 0xFC)); return inl(0xCFC); }
static void pci_write(u32 dev, u32 reg, u32 v) { outl(0xCF8, 0x80000000u | (dev << 11) | (reg & 0xFC)); outl(0xCFC, v); }
static u8 pci_read8(u32 dev, u32 reg) { return (u8)(pci_read(dev, reg) >> ((reg & 3) * 8)); }

static u64 bar_address(u32 dev, u32 bar) {
    u32 low = pci_read(dev, 0x10 + bar * 4);
    if (low & 1) return 0;  /* I/O BAR: not used by modern virtio-pci here */
    u64 addr = low & ~0xFu;
    if (((low >> 1) & 3) == 2) addr |= (u64)pci_read(dev, 0x14 + bar * 4) << 32;
    return addr;
}

/* ---- virtio ---- */
struct desc { u64 addr; u32 len; u16 flags, next; };
#define QSIZE_MAX 256
#define MAX_QD 64
static struct desc desc_table[QSIZE_MAX] __attribute__((aligned(4096)));
static struct { u16 flags, idx, ring[QSIZE_MAX]; } avail __attribute__((aligned(4096)));
static struct { u16 flags, idx; struct { u32 id, len; } ring[QSIZE_MAX]; } used __attribute__((aligned(4096)));
static struct { u32 type, reserved; u64 sector; } headers[MAX_QD];
static volatile u8 statuses[MAX_QD];
static u8 buffers[MAX_QD][4096] __attribute__((aligned(4096)));
static u64 started_at[MAX_QD];

static u64 parse_arg(const char *cmdline, const char *key, u64 fallback) {
    if (!cmdline) return fallback;
    for (const char *p = cmdline; *p; p++) {
        if (p != cmdline && p[-1] != ' ') continue;
        const char *k = key, *q = p;
        while (*k && *q == *k) { k++; q++; }
        if (*k || *q != '=') continue;
        u64 v = 0; q++;
        while (*q >= '0' && *q <= '9') v = v * 10 + (u64)(*q++ - '0');
        return v;
    }
    return fallback;
}

static u64 rng = 0x9E3779B97F4A7C15ull;
static u64 next_random(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

void iobench_main(struct start_info *info) {
    const char *cmdline = (info && info->magic == 0x336EC578 && info->cmdline) ? (const char *)(uintptr_t)info->cmdline : 0;
    if (info && info->magic == 0x336EC578) rsdp_address = info->rsdp;
    u64 qd = parse_arg(cmdline, "qd", 1), total = parse_arg(cmdline, "requests", 20000);
    u64 want_irq = parse_arg(cmdline, "irq", 0), hold_ns = parse_arg(cmdline, "hold_ms", 300) * 1000000;
    u64 rate = parse_arg(cmdline, "rate", 0), interval_ns = rate ? 1000000000ull / rate : 0;
    if (qd < 1 || qd > MAX_QD) fail("qd out of range (1-64)");

    /* Find the virtio-blk function: vendor 0x1AF4, device 0x1042 (modern) or 0x1001 (transitional). */
    u32 dev = 0; int found = 0;
    for (dev = 0; dev < 32 && !found; dev++) {
        u32 id = pci_read(dev, 0);
        if ((id & 0xFFFF) == 0x1AF4 && ((id >> 16) == 0x1042 || (id >> 16) == 0x1001)) { found = 1; break; }
    }
    if (!found) fail("no virtio-blk PCI function");
    pci_write(dev, 4, pci_read(dev, 4) | 0x6);  /* memory space, bus master */

    u64 common = 0, notify = 0, device_cfg = 0, msix_table = 0; u32 notify_multiplier = 0; u8 msix_cap = 0;
    if (pci_read(dev, 4) & (1u << 20)) {
        for (u8 cap = pci_read8(dev, 0x34) & 0xFC; cap; cap = pci_read8(dev, cap + 1) & 0xFC) {
            if (pci_read8(dev, cap) == 0x11) {  /* MSI-X: table BAR and offset */
                u32 table = pci_read(dev, cap + 4);
                msix_cap = cap;
                msix_table = bar_address(dev, table & 7) + (table & ~7u);
            }
            if (pci_read8(dev, cap) != 0x09) continue;  /* vendor-specific: virtio */
            u8 type = pci_read8(dev, cap + 3), bar = pci_read8(dev, cap + 4);
            if (bar > 5) continue;
            u64 base = bar_address(dev, bar) + pci_read(dev, cap + 8);
            if (type == 1) common = base;
            if (type == 2) { notify = base; notify_multiplier = pci_read(dev, cap + 16); }
            if (type == 4) device_cfg = base;
        }
    }
    if (!common || !notify || !device_cfg) fail("no modern virtio-pci capabilities");
    if (common >> 32 || notify >> 32 || device_cfg >> 32) fail("BAR above 4 GiB");

    /* Status: reset, ACKNOWLEDGE | DRIVER, features (VERSION_1 only), FEATURES_OK. */
    MMIO(u8, common + 0x14) = 0;
    while (MMIO(u8, common + 0x14) != 0) {}
    MMIO(u8, common + 0x14) = 1 | 2;
    MMIO(u32, common + 0x00) = 1;  /* device_feature_select: bits 32-63 */
    if (!(MMIO(u32, common + 0x04) & 1)) fail("device lacks VIRTIO_F_VERSION_1");
    MMIO(u32, common + 0x08) = 0; MMIO(u32, common + 0x0C) = 0;
    MMIO(u32, common + 0x08) = 1; MMIO(u32, common + 0x0C) = 1;
    MMIO(u8, common + 0x14) = 1 | 2 | 8;
    if (!(MMIO(u8, common + 0x14) & 8)) fail("FEATURES_OK refused");
    MMIO(u16, common + 0x10) = 0xFFFF;  /* no config-change vector */

    MMIO(u16, common + 0x16) = 0;  /* queue_select 0 */
    u16 size = MMIO(u16, common + 0x18);
    if (size == 0) fail("queue 0 absent");
    if (size > QSIZE_MAX) size = QSIZE_MAX;
    if (size < 3 * qd) fail("queue too small for qd");
    MMIO(u16, common + 0x18) = size;
    if (want_irq) {
        /* MSI-X entry 0: fixed delivery of vector 0x40 to APIC 0, unmasked; then MSI-X enable. */
        if (!msix_cap || !msix_table || msix_table >> 32) fail("no MSI-X table below 4 GiB");
        MMIO(u32, msix_table) = 0xFEE00000; MMIO(u32, msix_table + 4) = 0;
        MMIO(u32, msix_table + 8) = 0x40; MMIO(u32, msix_table + 12) = 0;
        pci_write(dev, msix_cap, (pci_read(dev, msix_cap) | (1u << 31)) & ~(1u << 30));
        MMIO(u16, common + 0x1A) = 0;
        if (MMIO(u16, common + 0x1A) != 0) fail("queue refused MSI-X vector 0");
    } else {
        MMIO(u16, common + 0x1A) = 0xFFFF;  /* no MSI-X vector: completions are polled */
    }
    MMIO(u64, common + 0x20) = (uintptr_t)desc_table;
    MMIO(u64, common + 0x28) = (uintptr_t)&avail;
    MMIO(u64, common + 0x30) = (uintptr_t)&used;
    u64 doorbell = notify + (u64)MMIO(u16, common + 0x1E) * notify_multiplier;
    MMIO(u16, common + 0x1C) = 1;
    MMIO(u8, common + 0x14) = 1 | 2 | 8 | 4;  /* DRIVER_OK */
    avail.flags = want_irq ? 0 : 1;  /* VRING_AVAIL_F_NO_INTERRUPT unless interrupts are wanted */

    u64 blocks = MMIO(u64, device_cfg) / 8;  /* capacity in 512-byte sectors */
    if (blocks == 0) fail("empty disk");
    for (u64 s = 0; s < qd; s++) {
        desc_table[s * 3] = (struct desc){ (uintptr_t)&headers[s], 16, 1, (u16)(s * 3 + 1) };
        desc_table[s * 3 + 1] = (struct desc){ (uintptr_t)buffers[s], 4096, 1 | 2, (u16)(s * 3 + 2) };
        desc_table[s * 3 + 2] = (struct desc){ (uintptr_t)&statuses[s], 1, 2, 0 };
    }

    puts_serial("iobench: start\n");
    spin_ns(hold_ns);  /* the host samples KVM's counters at the mark */
    u64 submitted = 0, completed = 0, kicks = 0, errors = 0, latency_sum = 0, latency_max = 0;
    u16 avail_idx = 0, used_seen = 0;
    u8 busy[MAX_QD] = {0};
    u64 t0 = now_ns(), next_due = t0;
    for (;;) {
        /* Fill free slots with new reads (open loop: only once each is due); one index update
         * publishes them all. */
        int published = 0;
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
            avail.ring[avail_idx % size] = (u16)(s * 3);
            avail_idx++; submitted++; published = 1;
        }
        if (published) {
            barrier();
            MMIO(u16, (uintptr_t)&avail.idx) = avail_idx;
            full_fence();  /* the index store before the flags load, as Linux's virtio_mb */
            if (!(MMIO(u16, (uintptr_t)&used.flags) & 1)) { MMIO(u16, doorbell) = 0; kicks++; }
        }
        if (completed == total) break;
        /* Closed loop: wait for a completion. Open loop: look, and go on submitting. */
        while (!interval_ns && MMIO(u16, (uintptr_t)&used.idx) == used_seen) {}
        barrier();
        while (used_seen != MMIO(u16, (uintptr_t)&used.idx)) {
            u32 id = used.ring[used_seen % size].id;
            used_seen++;
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
    puts_serial("iobench: result");
    put_field("qd", qd); put_field("rate", rate); put_field("irq", want_irq); put_field("requests", completed); put_field("errors", errors); put_field("kicks", kicks);
    put_field("ns", elapsed); put_field("iops", elapsed ? completed * 1000000000ull / elapsed : 0);
    put_field("lat_avg_ns", completed ? latency_sum / completed : 0); put_field("lat_max_ns", latency_max);
    puts_serial("\n");
    power_off();
}
