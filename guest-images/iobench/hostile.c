/* A misbehaving virtio-blk driver: chains a VMM must refuse (a buffer outside guest RAM, a next
 * index past the table, a cycle, an unknown request type, a read past the end of the disk),
 * each followed by a good read that must still work; then an available index that jumps past
 * the ring, which must put the device in DEVICE_NEEDS_RESET; then a reset, after which the device
 * must work again. Prints one line: "iobench: result test=hostile" and a field per case, 1 when
 * the device behaved (refused the chain and went on), 0 when not. */
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
    virtio_open(&dev, 0x1042, 0x1001, VIRTIO_F_VERSION_1);
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

void hostile_workload(void) {
    start_device();
    puts_serial("iobench: start\n");
    if (!good_read()) fail("the device does not work to begin with");

    /* Data buffer far outside guest RAM: refused, the status byte not claimed as success. */
    read_chain(0, 0, 0xFFFFF0000000ull);
    int outside = returned(0) && status != 0 && good_read();

    /* A next index past the descriptor table. */
    read_chain(0, 0, (uintptr_t)buffer);
    ring.desc[0].next = (u16)(q.size + 7);
    int next = returned(0) && status == 0xFF && good_read();

    /* A cycle: 0 -> 1 -> 0 -> ... */
    read_chain(0, 0, (uintptr_t)buffer);
    ring.desc[1].next = 0;
    int cycle = returned(0) && status == 0xFF && good_read();

    /* An unknown request type: VIRTIO_BLK_S_UNSUPP (2). */
    read_chain(0x55, 0, (uintptr_t)buffer);
    int unsupported = returned(0) && status == 2 && good_read();

    /* A read of the sector just past the end: VIRTIO_BLK_S_IOERR (1). */
    read_chain(0, blocks * 8, (uintptr_t)buffer);
    int beyond = returned(0) && status == 1 && good_read();

    /* The available index jumps past the ring: the device must ask for a reset. */
    read_chain(0, 0, (uintptr_t)buffer);
    q.avail_idx = (u16)(q.avail_idx + q.size + 5);
    vq_publish(&q);
    int jump = 0;
    for (u64 deadline = now_ns() + 100000000; now_ns() < deadline && !jump;) jump = (virtio_status(&dev) & 64) != 0;

    /* After a reset the device serves requests again. */
    start_device();
    int recovered = good_read();

    puts_serial("iobench: end\n");
    puts_serial("iobench: result test=hostile");
    put_field("outside", (u64)outside); put_field("next", (u64)next); put_field("cycle", (u64)cycle);
    put_field("unsupported", (u64)unsupported); put_field("beyond", (u64)beyond); put_field("jump", (u64)jump);
    put_field("recovered", (u64)recovered);
    puts_serial("\n");
}
