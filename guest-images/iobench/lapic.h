/* The local APIC and interrupts, for workloads that take them (redirect.c): the boot CPU's
 * APIC in the flat logical model, IDT gates, and starting an application processor (smp.S). */
#pragma once
#include "platform.h"

#define LAPIC_BASE 0xFEE00000u
#define SPURIOUS_VECTOR 0xFF
#define WAKE_VECTOR 0x50  /* a fixed IPI that gets a halted CPU going (eoi_handler) */

/* Masks the LVT entries, sets the flat model with LDR bit (24 + APIC ID), enables the APIC. */
void lapic_enable_flat_logical(void);
/* Points IDT entry `vector` at `handler` (an interrupt gate to CPL0; `user`: `int` may raise it
 * from CPL3). */
void idt_set_gate(u8 vector, void (*handler)(void), int user);
/* IF on and off for CPL3 code: sti and cli, completed by gp_handler (interrupts.S) under PVM. */
static inline void interrupts_on(void) { __asm__ volatile("sti" ::: "memory"); }
static inline void interrupts_off(void) { __asm__ volatile("cli" ::: "memory"); }
/* INIT and startup IPIs to `apic_id`, which runs smp.S and idles; fails if it never reports. */
void start_application_processor(u8 apic_id);
/* A fixed IPI of `vector` to the CPU with local APIC ID `apic_id`. */
void send_fixed_ipi(u8 apic_id, u8 vector);
/* Interrupts irq_count_handler has counted on the CPU with local APIC ID `apic_id` (0-7). */
u64 irq_count(u8 apic_id);

extern void irq_count_handler(void), eoi_handler(void), spurious_handler(void), gp_handler(void);
extern volatile u32 ap_spin;  /* nonzero: the AP spins instead of halting */
