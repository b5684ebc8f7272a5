/* A misbehaving virtio-blk driver: chains a VMM must refuse (a buffer outside guest RAM, a next
 * index past the table, a cycle, an unknown request type, a read past the end of the disk),
 * each followed by a good read that must still work; then an available index that jumps past
 * the ring, which must put the device in DEVICE_NEEDS_RESET; then a reset, after which the device
 * must work again. Then the transport: DRIVER_OK cleared and set again with BAR 0 moved in
 * between (must not activate twice), status writes out of order, a vector the MSI-X table lacks,
 * odd widths on the common configuration, a reset with requests in flight; and the UART in
 * loopback flooded past its FIFO (hostile_uart=0 leaves that out). hostile_loops=N repeats it
 * all. Prints one line: "iobench: result test=hostile" and a field per case, 1 when the device
 * behaved in every loop (refused what it must and went on), 0 when not. */
#include "virtio.h"
#include "workloads.h"

static struct vring ring;
static struct { u32 type, reserved; u64 sector; } header;
static volatile u8 status;
static u8 buffer[4096] __attribute__((aligned(4096)));
static struct virtio_device dev;
static struct virtqueue q;
static u64 blocks;

static void start_device(void) {
    virtio_open(&dev, 0x1042, 0x1001, VIRTIO_F_VERSION_1, 0);
    virtio_queue(&dev, &q, 0, &ring, 64, 0);
    virtio_driver_ok(&dev);
    blocks = MMIO(u64, dev.device_cfg) / 8;
    if (blocks < 2) fail("disk too small");
}

/* Publishes chain `head` and waits up to 100 ms for the device to return it. */
static int returned(u16 head) {
    vq_add(&q, head);
    vq_publish(&q);
    for (u64 deadline = now_ns() + 100000000; now_ns() < deadline;) {
        if (vq_has_used(&q)) return vq_take(&q, 0) == head;
    }
    return 0;
}

/* header -> 4 KiB data buffer (device-writable, at `data`) -> status, in descriptors 0-2. */
static void read_chain(u32 type, u64 sector, u64 data) {
    header.type = type; header.reserved = 0; header.sector = sector;
    status = 0xFF;
    ring.desc[0] = (struct desc){ (uintptr_t)&header, 16, DESC_NEXT, 1 };
    ring.desc[1] = (struct desc){ data, 4096, DESC_NEXT | DESC_WRITE, 2 };
    ring.desc[2] = (struct desc){ (uintptr_t)&status, 1, DESC_WRITE, 0 };
}

/* A good read of a random block: returned, status OK, the pattern's sector number in place. */
static int good_read(void) {
    u64 sector = (next_random() % blocks) * 8;
    read_chain(0, sector, (uintptr_t)buffer);
    return returned(0) && status == 0 && *(u64 *)buffer == sector;
}

/* No more chains come back than were published (a second activation would re-serve the ring). */
static int no_extra_used(void) {
    spin_ns(1000000);
    return MMIO(u16, (uintptr_t)&ring.used.idx) == q.used_seen;
}

/* DRIVER_OK cleared without a reset, BAR 0 moved, DRIVER_OK written again through the moved BAR:
 * ignored, so the device keeps its one activation, and works once the BAR is back. */
static int reentry_case(void) {
    u32 low = pci_read(dev.pci, 0x10);
    /* A second activation would serve the ring again from its start, rewriting this byte (the
     * status of the chains already completed). */
    status = 0xAA;
    MMIO(u8, dev.common + 0x14) = 1 | 2 | 8;
    pci_write(dev.pci, 0x10, low + 0x100000);
    u64 moved = dev.common + 0x100000;
    MMIO(u8, moved + 0x14) = 1 | 2 | 8 | 4;
    u8 status_seen = MMIO(u8, moved + 0x14);
    spin_ns(2000000);
    int served_again = status != 0xAA;
    pci_write(dev.pci, 0x10, low);
    return status_seen == (1 | 2 | 8 | 4) && !served_again && good_read() && good_read() && no_extra_used();
}

/* After a reset: DRIVER_OK alone, then DRIVER_OK without FEATURES_OK: both ignored. */
static int order_case(void) {
    MMIO(u8, dev.common + 0x14) = 0;
    while (MMIO(u8, dev.common + 0x14) != 0) {}
    MMIO(u8, dev.common + 0x14) = 4;
    int alone = MMIO(u8, dev.common + 0x14) == 0;
    MMIO(u8, dev.common + 0x14) = 1 | 2;
    MMIO(u8, dev.common + 0x14) = 1 | 2 | 4;
    int skipped = MMIO(u8, dev.common + 0x14) == (1 | 2);
    start_device();
    return alone && skipped && good_read();
}

/* A queue vector and a config vector the MSI-X table does not have read back as NO_VECTOR. */
static int vector_case(void) {
    MMIO(u16, dev.common + 0x16) = 0;
    MMIO(u16, dev.common + 0x1A) = 0x7FF;
    int queue = MMIO(u16, dev.common + 0x1A) == 0xFFFF;
    MMIO(u16, dev.common + 0x10) = 0x123;
    int config = MMIO(u16, dev.common + 0x10) == 0xFFFF;
    return queue && config && good_read();
}

/* Reads and writes of every width at odd offsets of the common configuration, then reads of
 * every width across every other window of BAR 0 (ISR, device config, notify, MSI-X table and
 * PBA) and writes of every width to notify, device config and the MSI-X table, then a read. */
static int widths_case(void) {
    volatile u64 sink = 0;
    for (u64 offset = 0; offset < 0x40; offset += 3) {
        sink += MMIO(u8, dev.common + offset);
        sink += MMIO(u16, dev.common + (offset & ~1ull));
        sink += MMIO(u64, dev.common + (offset & ~7ull));
    }
    u64 bar = pci_bar_address(dev.pci, 0);
    static const u64 windows[] = { 0x1000, 0x2000, 0x3000, 0x8000, 0xC000 };
    for (u32 w = 0; w < sizeof windows / sizeof windows[0]; w++) {
        for (u64 offset = 0; offset < 0x30; offset += 5) {
            u64 at = bar + windows[w] + offset;
            sink += MMIO(u8, at) + MMIO(u16, at & ~1ull) + MMIO(u32, at & ~3ull) + MMIO(u64, at & ~7ull);
            if (windows[w] == 0x2000 || windows[w] == 0x3000 || windows[w] == 0x8000) {
                MMIO(u8, at) = 0x5A;
                MMIO(u16, at & ~1ull) = 0x5A5A;
                if (windows[w] != 0x8000) MMIO(u64, at & ~7ull) = ~0ull;  /* MSI-X entries keep their mask */
            }
        }
    }
    MMIO(u16, dev.common + 0x15) = 0xFFFF;  /* config generation (read-only) and a status byte */
    MMIO(u64, dev.common + 0x38) = ~0ull;    /* past the registers */
    MMIO(u8, dev.common + 0x1B) = 0xFF;      /* the high byte of the queue vector */
    (void)sink;
    u8 status_now = MMIO(u8, dev.common + 0x14);
    start_device();
    return (status_now & 4) != 0 && good_read();
}

/* A reset right after publishing reads: the device must come back to a fresh start. */
static int reset_in_flight_case(void) {
    read_chain(0, 0, (uintptr_t)buffer);
    for (int i = 0; i < 32; i++) vq_add(&q, 0);
    vq_publish(&q);
    MMIO(u8, dev.common + 0x14) = 0;
    while (MMIO(u8, dev.common + 0x14) != 0) {}
    start_device();
    return good_read() && no_extra_used();
}

/* The UART in loopback, written past its 4096-byte FIFO: an overrun, and exactly a FIFO's worth
 * to read back. Nothing is printed meanwhile (output would loop back too). */
static int uart_case(void) {
    outb(0x3FC, 0x10 | 0x08);
    for (int i = 0; i < 5000; i++) outb(0x3F8, (u8)i);
    int overrun = (inb(0x3FD) & 2) != 0;
    int drained = 0;
    while ((inb(0x3FD) & 1) && drained < 5000) { (void)inb(0x3F8); drained++; }
    outb(0x3FC, 0x08);
    return overrun && drained == 4096;
}

void hostile_workload(void) {
    start_device();
    puts_serial("iobench: start\n");
    if (!good_read()) fail("the device does not work to begin with");
    u64 loops = arg("hostile_loops", 1);
    int with_uart = arg("hostile_uart", 1) != 0;
    int outside = 1, next = 1, cycle = 1, unsupported = 1, beyond = 1, jump = 1, recovered = 1;
    int reentry = 1, order = 1, vector = 1, widths = 1, reset_in_flight = 1, uart = 1;
    for (u64 loop = 0; loop < loops; loop++) {

        /* Data buffer far outside guest RAM: refused, the status byte not claimed as success. */
        read_chain(0, 0, 0xFFFFF0000000ull);
        outside &= returned(0) && status != 0 && good_read();

        /* A next index past the descriptor table. */
        read_chain(0, 0, (uintptr_t)buffer);
        ring.desc[0].next = (u16)(q.size + 7);
        next &= returned(0) && status == 0xFF && good_read();

        /* A cycle: 0 -> 1 -> 0 -> ... */
        read_chain(0, 0, (uintptr_t)buffer);
        ring.desc[1].next = 0;
        cycle &= returned(0) && status == 0xFF && good_read();

        /* An unknown request type: VIRTIO_BLK_S_UNSUPP (2). */
        read_chain(0x55, 0, (uintptr_t)buffer);
        unsupported &= returned(0) && status == 2 && good_read();

        /* A read of the sector just past the end: VIRTIO_BLK_S_IOERR (1). */
        read_chain(0, blocks * 8, (uintptr_t)buffer);
        beyond &= returned(0) && status == 1 && good_read();

        /* The available index jumps past the ring: the device must ask for a reset. */
        read_chain(0, 0, (uintptr_t)buffer);
        q.avail_idx = (u16)(q.avail_idx + q.size + 5);
        vq_publish(&q);
        int jumped = 0;
        for (u64 deadline = now_ns() + 100000000; now_ns() < deadline && !jumped;) jumped = (virtio_status(&dev) & 64) != 0;
        jump &= jumped;

        /* After a reset the device serves requests again. */
        start_device();
        recovered &= good_read();

        reentry &= reentry_case();
        order &= order_case();
        vector &= vector_case();
        widths &= widths_case();
        reset_in_flight &= reset_in_flight_case();
        if (with_uart) uart &= uart_case();
    }
    puts_serial("iobench: end\n");
    puts_serial("iobench: result test=hostile");
    put_field("outside", (u64)outside); put_field("next", (u64)next); put_field("cycle", (u64)cycle);
    put_field("unsupported", (u64)unsupported); put_field("beyond", (u64)beyond); put_field("jump", (u64)jump);
    put_field("recovered", (u64)recovered); put_field("reentry", (u64)reentry); put_field("order", (u64)order);
    put_field("vector", (u64)vector); put_field("widths", (u64)widths); put_field("reset_in_flight", (u64)reset_in_flight);
    if (with_uart) put_field("uart", (u64)uart);
    puts_serial("\n");
}
