/* See lapic.h. Runs at CPL3: the APIC page and the IDT are ordinary identity-mapped memory. */
#include "lapic.h"

#define REG(offset) MMIO(u32, LAPIC_BASE + (offset))
/* Below 1 MiB and page-aligned: a gap in hvctl's PVH layout (its structures end at 0x7FFF, its
 * page tables start at 0x9000). Under QEMU, SeaBIOS is done by now; in case its loader left
 * something there, the workload reads its command line before it starts an AP. */
#define AP_TRAMPOLINE 0x8000u

extern u8 idt[4096];
extern volatile u64 irq_counts[8];
extern volatile u32 ap_ready;
extern const u8 ap_trampoline[], ap_trampoline_end[];

void lapic_enable_flat_logical(void) {
    REG(0x320) = 0x10000; REG(0x350) = 0x10000; REG(0x360) = 0x10000;  /* timer, LINT0, LINT1 */
    REG(0xE0) = 0xFFFFFFFF;
    REG(0xD0) = 1u << (24 + (REG(0x20) >> 24));
    REG(0x80) = 0;
    REG(0xF0) = 0x100 | SPURIOUS_VECTOR;
}

void idt_set_gate(u8 vector, void (*handler)(void), int user) {
    u64 offset = (uintptr_t)handler;
    u8 *gate = idt + 16 * vector;
    u64 type = user ? 0xEE : 0x8E;  /* present interrupt gate, DPL 3 or 0 */
    u64 low = (offset & 0xFFFF) | (0x08ull << 16) | (type << 40) | ((offset >> 16 & 0xFFFF) << 48);
    *(volatile u64 *)gate = low;
    *(volatile u64 *)(gate + 8) = offset >> 32;
}

static void send_ipi(u8 apic_id, u32 command) {
    REG(0x310) = (u32)apic_id << 24;
    REG(0x300) = command;
    while (REG(0x300) & (1u << 12)) {}  /* delivery status: pending */
}

void start_application_processor(u8 apic_id) {
    for (const u8 *p = ap_trampoline; p < ap_trampoline_end; p++) MMIO(u8, AP_TRAMPOLINE + (p - ap_trampoline)) = *p;
    full_fence();
    send_ipi(apic_id, 0x4500);                         /* INIT, assert */
    spin_ns(10000000);
    for (int i = 0; i < 2 && !ap_ready; i++) {
        send_ipi(apic_id, 0x4600 | (AP_TRAMPOLINE >> 12));  /* STARTUP */
        u64 deadline = now_ns() + 2000000000ull;
        while (!ap_ready && now_ns() < deadline) {}
    }
    if (!ap_ready) fail("the application processor did not start");
}

void send_fixed_ipi(u8 apic_id, u8 vector) { send_ipi(apic_id, 0x4000 | vector); }

u64 irq_count(u8 apic_id) { return apic_id < 8 ? irq_counts[apic_id] : 0; }
