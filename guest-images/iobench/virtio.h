/* A modern virtio-pci device and its split virtqueues, driven by polling from CPL3. */
#pragma once
#include "platform.h"

#define QSIZE_MAX 256
#define VIRTIO_F_VERSION_1 (1ull << 32)
#define VIRTIO_BLK_F_FLUSH (1ull << 9)

struct desc { u64 addr; u32 len; u16 flags, next; };
#define DESC_NEXT 1
#define DESC_WRITE 2

/* One split ring's memory; the driver uses the first `size` entries of each part. */
struct vring {
    struct desc desc[QSIZE_MAX] __attribute__((aligned(4096)));
    struct { u16 flags, idx, ring[QSIZE_MAX]; } avail __attribute__((aligned(4096)));
    struct { u16 flags, idx; struct { u32 id, len; } ring[QSIZE_MAX]; } used __attribute__((aligned(4096)));
};

struct virtqueue {
    struct vring *ring;
    u16 size, avail_idx, used_seen;
    u64 doorbell, kicks;
    u16 doorbell_value;  /* the queue index, written to the doorbell */
};

struct virtio_device {
    u32 pci;
    u64 common, notify, device_cfg, msix_table;
    u32 notify_multiplier;
    u8 msix_cap;
};

/* Finds the first function with vendor 0x1AF4 and one of the two device IDs, reads its virtio
 * capabilities, and negotiates `features` (fails if the device lacks any) and whichever of
 * `optional` it offers. */
void virtio_open(struct virtio_device *d, u16 modern_id, u16 transitional_id, u64 features, u64 optional);
/* Sets up queue `index` on `ring` (at most `size` entries), with MSI-X vector 0 when `irq`
 * (the MSI-X table entry is programmed by virtio_open's caller through virtio_enable_msix)
 * or none; the driver asks for no interrupts unless `irq`. */
void virtio_queue(struct virtio_device *d, struct virtqueue *q, u16 index, struct vring *ring, u16 size, int irq);
/* Programs MSI-X table entry 0 with an MSI message and enables MSI-X. */
void virtio_enable_msix(struct virtio_device *d, u32 address, u32 data);
/* The message the workloads use unless they say otherwise: vector 0x40, fixed, APIC ID 0. */
#define MSI_ADDRESS_CPU0 0xFEE00000u
#define MSI_DATA_DEFAULT 0x40u
void virtio_driver_ok(struct virtio_device *d);
/* The device status register (DEVICE_NEEDS_RESET is 64). */
static inline u8 virtio_status(struct virtio_device *d) { return MMIO(u8, d->common + 0x14); }

/* Adds a chain head to the available ring (published by vq_publish). */
static inline void vq_add(struct virtqueue *q, u16 head) { q->ring->avail.ring[q->avail_idx++ % q->size] = head; }
/* Publishes added chains and kicks unless the device asked for no notifications. */
void vq_publish(struct virtqueue *q);
/* Whether the device has returned a chain not yet taken with vq_take. */
static inline int vq_has_used(struct virtqueue *q) { return MMIO(u16, (uintptr_t)&q->ring->used.idx) != q->used_seen; }
/* Takes the next returned chain: its head and the length the device wrote. */
static inline u32 vq_take(struct virtqueue *q, u32 *length) {
    barrier();
    u16 slot = q->used_seen++ % q->size;
    if (length) *length = q->ring->used.ring[slot].len;
    return q->ring->used.ring[slot].id;
}
