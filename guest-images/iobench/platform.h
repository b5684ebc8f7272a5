/* What the iobench workloads share: port I/O (IOPL 3), MMIO, kvm-clock time, the COM1 console,
 * ACPI power-off, PCI configuration mechanism #1 and the command line. */
#pragma once
#include <stdint.h>

typedef uint8_t u8; typedef uint16_t u16; typedef uint32_t u32; typedef uint64_t u64;

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" :: "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" :: "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }
#define barrier() __asm__ volatile("" ::: "memory")
#define full_fence() __asm__ volatile("mfence" ::: "memory")
#define MMIO(type, addr) (*(volatile type *)(uintptr_t)(addr))

/* PVH's hvm_start_info, as far as iobench reads it. */
struct start_info { u32 magic, version, flags, nr_modules; u64 modlist, cmdline, rsdp, memmap; u32 memmap_entries; };

void platform_init(const struct start_info *info);
u64 now_ns(void);
void spin_ns(u64 ns);

void puts_serial(const char *s);
void put_u64(u64 v);
void put_field(const char *name, u64 v);
void fail(const char *why) __attribute__((noreturn));
void power_off(void) __attribute__((noreturn));

/* The number after " key=" on the command line, or fallback; hex with a 0x prefix. */
u64 arg(const char *key, u64 fallback);

u32 pci_read(u32 dev, u32 reg);
void pci_write(u32 dev, u32 reg, u32 v);
u8 pci_read8(u32 dev, u32 reg);
u64 pci_bar_address(u32 dev, u32 bar);

u64 next_random(void);
