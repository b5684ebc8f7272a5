/* See platform.h. */
#include "platform.h"

struct pvclock { u32 version, pad0; u64 tsc_timestamp, system_time; u32 mul; int8_t shift; u8 flags, pad[2]; };
extern volatile struct pvclock pvclock;  /* registered with the host by entry.S */
static u64 rsdp_address;
static const char *cmdline;

void platform_init(const struct start_info *info) {
    if (!info || info->magic != 0x336EC578) return;
    rsdp_address = info->rsdp;
    cmdline = info->cmdline ? (const char *)(uintptr_t)info->cmdline : 0;
}

static inline u64 rdtsc(void) { u32 lo, hi; __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi)); return ((u64)hi << 32) | lo; }

/* kvm-clock nanoseconds: the host's record plus the TSC delta scaled as it says. */
u64 now_ns(void) {
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

void spin_ns(u64 ns) { u64 end = now_ns() + ns; while (now_ns() < end) {} }

static void putc_serial(char c) {
    while (!(inb(0x3FD) & 0x20)) {}
    outb(0x3F8, (u8)c);
}
void puts_serial(const char *s) { while (*s) { if (*s == '\n') putc_serial('\r'); putc_serial(*s++); } }
void put_u64(u64 v) {
    char buf[24]; int i = 23; buf[i] = 0;
    do { buf[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    puts_serial(buf + i);
}
void put_field(const char *name, u64 v) { puts_serial(" "); puts_serial(name); puts_serial("="); put_u64(v); }

void fail(const char *why) {
    puts_serial("iobench: error "); puts_serial(why); puts_serial("\n");
    power_off();
}

u64 arg(const char *key, u64 fallback) {
    if (!cmdline) return fallback;
    for (const char *p = cmdline; *p; p++) {
        if (p != cmdline && p[-1] != ' ') continue;
        const char *k = key, *q = p;
        while (*k && *q == *k) { k++; q++; }
        if (*k || *q != '=') continue;
        u64 v = 0; q++;
        if (q[0] == '0' && q[1] == 'x') {
            for (q += 2;; q++) {
                int d = *q >= '0' && *q <= '9' ? *q - '0' : *q >= 'a' && *q <= 'f' ? *q - 'a' + 10 : -1;
                if (d < 0) break;
                v = v * 16 + (u64)d;
            }
        } else {
            while (*q >= '0' && *q <= '9') v = v * 10 + (u64)(*q++ - '0');
        }
        return v;
    }
    return fallback;
}

/* ---- ACPI power-off ---- */
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
void power_off(void) {
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
u32 pci_read(u32 dev, u32 reg) { outl(0xCF8, 0x80000000u | (dev << 11) | (reg & 0xFC)); return inl(0xCFC); }
void pci_write(u32 dev, u32 reg, u32 v) { outl(0xCF8, 0x80000000u | (dev << 11) | (reg & 0xFC)); outl(0xCFC, v); }
u8 pci_read8(u32 dev, u32 reg) { return (u8)(pci_read(dev, reg) >> ((reg & 3) * 8)); }

u64 pci_bar_address(u32 dev, u32 bar) {
    u32 low = pci_read(dev, 0x10 + bar * 4);
    if (low & 1) return 0;  /* I/O BAR: modern virtio-pci does not use one */
    u64 addr = low & ~0xFu;
    if (((low >> 1) & 3) == 2) addr |= (u64)pci_read(dev, 0x14 + bar * 4) << 32;
    return addr;
}

static u64 rng = 0x9E3779B97F4A7C15ull;
u64 next_random(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
