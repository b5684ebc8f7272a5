/* See virtio.h. */
#include "virtio.h"

/* Common configuration registers (virtio 1.2, 4.1.4.3). */
#define DEVICE_FEATURE_SELECT 0x00
#define DEVICE_FEATURE 0x04
#define DRIVER_FEATURE_SELECT 0x08
#define DRIVER_FEATURE 0x0C
#define MSIX_CONFIG 0x10
#define DEVICE_STATUS 0x14
#define QUEUE_SELECT 0x16
#define QUEUE_SIZE 0x18
#define QUEUE_MSIX_VECTOR 0x1A
#define QUEUE_ENABLE 0x1C
#define QUEUE_NOTIFY_OFF 0x1E
#define QUEUE_DESC 0x20
#define QUEUE_DRIVER 0x28
#define QUEUE_DEVICE 0x30
#define STATUS_ACKNOWLEDGE 1
#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4
#define STATUS_FEATURES_OK 8

void virtio_open(struct virtio_device *d, u16 modern_id, u16 transitional_id, u64 features, u64 optional) {
    u32 dev;
    for (dev = 0; dev < 32; dev++) {
        u32 id = pci_read(dev, 0);
        if ((id & 0xFFFF) == 0x1AF4 && ((id >> 16) == modern_id || (id >> 16) == transitional_id)) break;
    }
    if (dev == 32) fail("no such virtio PCI function");
    *d = (struct virtio_device){ .pci = dev };
    pci_write(dev, 4, pci_read(dev, 4) | 0x6);  /* memory space, bus master */
    if (pci_read(dev, 4) & (1u << 20)) {
        for (u8 cap = pci_read8(dev, 0x34) & 0xFC; cap; cap = pci_read8(dev, cap + 1) & 0xFC) {
            if (pci_read8(dev, cap) == 0x11) {  /* MSI-X: table BAR and offset */
                u32 table = pci_read(dev, cap + 4);
                d->msix_cap = cap;
                d->msix_table = pci_bar_address(dev, table & 7) + (table & ~7u);
            }
            if (pci_read8(dev, cap) != 0x09) continue;  /* vendor-specific: virtio */
            u8 type = pci_read8(dev, cap + 3), bar = pci_read8(dev, cap + 4);
            if (bar > 5) continue;
            u64 base = pci_bar_address(dev, bar) + pci_read(dev, cap + 8);
            /* The first capability of each type is the one to use (virtio 1.2, 4.1.4). */
            if (type == 1 && !d->common) d->common = base;
            if (type == 2 && !d->notify) { d->notify = base; d->notify_multiplier = pci_read(dev, cap + 16); }
            if (type == 4 && !d->device_cfg) d->device_cfg = base;
        }
    }
    if (!d->common || !d->notify || !d->device_cfg) fail("no modern virtio-pci capabilities");
    if (d->common >> 32 || d->notify >> 32 || d->device_cfg >> 32) fail("BAR above 4 GiB");

    u64 common = d->common;
    MMIO(u8, common + DEVICE_STATUS) = 0;
    while (MMIO(u8, common + DEVICE_STATUS) != 0) {}
    MMIO(u8, common + DEVICE_STATUS) = STATUS_ACKNOWLEDGE;
    MMIO(u8, common + DEVICE_STATUS) = STATUS_ACKNOWLEDGE | STATUS_DRIVER;
    u64 offered = 0;
    for (u32 word = 0; word < 2; word++) {
        MMIO(u32, common + DEVICE_FEATURE_SELECT) = word;
        offered |= (u64)MMIO(u32, common + DEVICE_FEATURE) << (32 * word);
    }
    if ((offered & features) != features) fail("device lacks a feature iobench needs");
    features |= offered & optional;
    for (u32 word = 0; word < 2; word++) {
        MMIO(u32, common + DRIVER_FEATURE_SELECT) = word;
        MMIO(u32, common + DRIVER_FEATURE) = (u32)(features >> (32 * word));
    }
    MMIO(u8, common + DEVICE_STATUS) = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
    if (!(MMIO(u8, common + DEVICE_STATUS) & STATUS_FEATURES_OK)) fail("FEATURES_OK refused");
    MMIO(u16, common + MSIX_CONFIG) = 0xFFFF;  /* no config-change vector */
}

void virtio_enable_msix(struct virtio_device *d, u32 address, u32 data) {
    if (!d->msix_cap || !d->msix_table || d->msix_table >> 32) fail("no MSI-X table below 4 GiB");
    MMIO(u32, d->msix_table) = address; MMIO(u32, d->msix_table + 4) = 0;
    MMIO(u32, d->msix_table + 8) = data; MMIO(u32, d->msix_table + 12) = 0;
    pci_write(d->pci, d->msix_cap, (pci_read(d->pci, d->msix_cap) | (1u << 31)) & ~(1u << 30));
}

void virtio_queue(struct virtio_device *d, struct virtqueue *q, u16 index, struct vring *ring, u16 size, int irq) {
    u64 common = d->common;
    MMIO(u16, common + QUEUE_SELECT) = index;
    u16 max = MMIO(u16, common + QUEUE_SIZE);
    if (max == 0) fail("queue absent");
    if (size > max) size = max;
    if (size > QSIZE_MAX) size = QSIZE_MAX;
    *q = (struct virtqueue){ .ring = ring, .size = size };
    ring->avail.idx = 0;  /* a ring used before a reset starts over */
    ring->used.idx = 0;
    ring->used.flags = 0;
    MMIO(u16, common + QUEUE_SIZE) = size;
    MMIO(u16, common + QUEUE_MSIX_VECTOR) = irq ? 0 : 0xFFFF;
    if (irq && MMIO(u16, common + QUEUE_MSIX_VECTOR) != 0) fail("queue refused MSI-X vector 0");
    MMIO(u64, common + QUEUE_DESC) = (uintptr_t)ring->desc;
    MMIO(u64, common + QUEUE_DRIVER) = (uintptr_t)&ring->avail;
    MMIO(u64, common + QUEUE_DEVICE) = (uintptr_t)&ring->used;
    q->doorbell = d->notify + (u64)MMIO(u16, common + QUEUE_NOTIFY_OFF) * d->notify_multiplier;
    MMIO(u16, common + QUEUE_ENABLE) = 1;
    ring->avail.flags = irq ? 0 : 1;  /* VRING_AVAIL_F_NO_INTERRUPT unless interrupts are wanted */
    q->kicks = 0;
    q->doorbell_value = index;
}

void virtio_driver_ok(struct virtio_device *d) {
    MMIO(u8, d->common + DEVICE_STATUS) = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK;
}

void vq_publish(struct virtqueue *q) {
    barrier();
    MMIO(u16, (uintptr_t)&q->ring->avail.idx) = q->avail_idx;
    full_fence();  /* the index store before the flags load, as Linux's virtio_mb */
    if (!(MMIO(u16, (uintptr_t)&q->ring->used.flags) & 1)) {  /* VRING_USED_F_NO_NOTIFY */
        MMIO(u16, q->doorbell) = q->doorbell_value;
        q->kicks++;
    }
}
