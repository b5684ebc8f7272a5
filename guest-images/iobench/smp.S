/* The way up for an application processor: a real-mode trampoline that lapic.c copies below
 * 1 MiB and points a startup IPI at, then 32-bit protected mode, the boot CPU's page tables and
 * GDT, long mode, and an idle loop at CPL0 that halts with interrupts on until ap_spin is set,
 * then spins at CPL3. The AP sets up its own local APIC (flat logical model, LDR bit = APIC ID). */
#include "long_mode.h"

        .section .text
        .code16
        .globl ap_trampoline, ap_trampoline_end
ap_trampoline:
        cli
        lgdtl   %cs:(ap_gdt_pointer - ap_trampoline)
        mov     %cr0, %eax
        or      $1, %eax
        mov     %eax, %cr0
        ljmpl   $0x28, $ap_protected_mode
        .balign 4
ap_gdt_pointer:
        .word 0x4F                          /* limit of entry.S's GDT (10 entries) */
        .long gdt
ap_trampoline_end:

        .code32
ap_protected_mode:
        mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        enter_long_mode_paging
        ljmp    $0x08, $ap_long_mode

        .code64
ap_long_mode:
        mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     $ap_stack_top, %rsp
        lidt    idt_pointer
        mov     $0x40, %ax
        ltr     %ax
        mov     $0xFEE00000, %edx
        movl    $0x10000, 0x320(%rdx)       /* LVT timer, LINT0, LINT1: masked */
        movl    $0x10000, 0x350(%rdx)
        movl    $0x10000, 0x360(%rdx)
        movl    $0xFFFFFFFF, 0xE0(%rdx)     /* DFR: flat model */
        mov     0x20(%rdx), %ecx            /* APIC ID in bits 31:24 */
        shr     $24, %ecx
        mov     $0x01000000, %eax
        shl     %cl, %eax
        mov     %eax, 0xD0(%rdx)            /* LDR: bit (24 + APIC ID) */
        movl    $0, 0x80(%rdx)              /* TPR */
        movl    $0x1FF, 0xF0(%rdx)          /* SVR: enabled, spurious vector 0xFF */
        movl    $1, ap_ready
1:      sti
        cmpl    $0, ap_spin
        jne     2f
        hlt
        jmp     1b
        /* Spinning: at CPL3, where PVM runs it natively and delivers interrupts (an emulated
         * CPL0 loop takes none). */
2:      pushq   $0x1b                       /* SS: user data */
        pushq   $ap_user_stack_top
        pushq   $0x3202                     /* RFLAGS: IOPL 3, IF 1 */
        pushq   $0x23                       /* CS: user code, 64-bit */
        pushq   $3f
        iretq
3:      pause
        jmp     3b

        .section .data
        .balign 4
        .globl ap_ready, ap_spin
ap_ready: .long 0
ap_spin:  .long 0
        .section .bss
        .balign 16
        .skip 16384
        .globl ap_stack_top
ap_stack_top:
        .skip 4096
ap_user_stack_top:
        .section .note.GNU-stack, "", @progbits
