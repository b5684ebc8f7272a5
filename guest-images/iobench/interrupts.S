/* Interrupt handling for the workloads that take interrupts (redirect.c): the IDT (gates are
 * written by lapic.c, none present until then), the TSS whose RSP0 is where an interrupt taken
 * at CPL3 runs, and the handlers. Handlers run at CPL0, which PVM emulates, so they are short. */

        .section .text
        .code64
        .globl irq_count_handler, eoi_handler, spurious_handler, gp_handler
/* Counts the interrupt for the CPU that took it (by local APIC ID) and ends it (EOI). */
irq_count_handler:
        push    %rax
        push    %rdx
        mov     $0xFEE00000, %edx
        mov     0x20(%rdx), %eax            /* APIC ID register: ID in bits 31:24 */
        shr     $24, %eax
        and     $7, %eax
        incq    irq_counts(,%rax,8)
        movl    $0, 0xB0(%rdx)              /* EOI */
        pop     %rdx
        pop     %rax
        iretq
/* Only ends the interrupt: a wake-up IPI. */
eoi_handler:
        push    %rdx
        mov     $0xFEE00000, %edx
        movl    $0, 0xB0(%rdx)
        pop     %rdx
        iretq
/* #GP: PVM runs CPL3 with the hardware's IOPL 0, so sti and cli there fault even with IOPL 3
 * in the guest's RFLAGS (and popf leaves IF alone). The handler completes them on the frame's
 * RFLAGS and steps over them; any other #GP is fatal (ud2 here ends in a triple fault). */
gp_handler:
        push    %rax
        mov     16(%rsp), %rax              /* frame: RAX, error code, RIP, CS, RFLAGS, RSP, SS */
        cmpb    $0xFB, (%rax)
        je      1f
        cmpb    $0xFA, (%rax)
        je      2f
        ud2
1:      orq     $0x200, 32(%rsp)
        jmp     3f
2:      andq    $~0x200, 32(%rsp)
3:      incq    16(%rsp)
        pop     %rax
        add     $8, %rsp
        iretq
/* The spurious-interrupt vector takes no EOI. */
spurious_handler:
        iretq

        .section .data
        .balign 8
        .globl idt_pointer
idt_pointer:
        .word 4095
        .quad idt
        .balign 16
        .globl tss
tss:
        .long 0
        .quad kernel_stack_top              /* RSP0 */
        .skip 104 - 12 - 2
        .word 104                           /* I/O permission bitmap offset */
        /* Every port allowed. IOPL 3 alone should do at CPL3, but PVM checks the bitmap once a
         * TSS is loaded (port I/O triple-faulted without one). */
        .skip 8192
        .byte 0xFF

        .balign 16
        .globl ap_tss
ap_tss:
        .long 0
        .quad ap_stack_top                  /* RSP0 (smp.S) */
        .skip 104 - 12 - 2
        .word 104

        .section .bss
        .balign 4096
        .globl idt, irq_counts
idt:    .skip 4096
irq_counts: .skip 8 * 8                     /* per local APIC ID 0-7 */
        .section .note.GNU-stack, "", @progbits
