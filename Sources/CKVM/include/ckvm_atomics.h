// Ordered accesses to guest memory shared with a driver (virtqueue indices and flags).
// Every function returns what ioctl()/syscall() returns (-1 with errno set on failure) unless it says otherwise.
#ifndef CKVM_ATOMICS_H
#define CKVM_ATOMICS_H

#include <stdint.h>

static inline uint16_t ckvm_load_acquire_u16(const void *address) {
    return __atomic_load_n((const uint16_t *)address, __ATOMIC_ACQUIRE);
}
static inline void ckvm_store_release_u16(void *address, uint16_t value) {
    __atomic_store_n((uint16_t *)address, value, __ATOMIC_RELEASE);
}
/// A full barrier: orders an earlier store (e.g. avail_event) before a later load (avail->idx).
static inline void ckvm_fence_seq_cst(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

/// Adds to a counter that one thread at a time writes (a queue's statistics, written by whichever
/// thread serves the queue, handed over under a lock) while others read it: a relaxed load and
/// store, without the locked instruction of an atomic add.
static inline void ckvm_single_writer_add_u64(uint64_t *address, uint64_t amount) {
    __atomic_store_n(address, __atomic_load_n(address, __ATOMIC_RELAXED) + amount, __ATOMIC_RELAXED);
}
static inline uint64_t ckvm_load_relaxed_u64(const uint64_t *address) {
    return __atomic_load_n(address, __ATOMIC_RELAXED);
}

#endif
