/* PVH entry of the iobench guest: 32-bit protected mode (as hvctl and QEMU's pvh.bin enter it),
 * identity-maps 4 GiB with user-accessible 2 MiB pages, switches to long mode, registers the
 * kvm-clock page (MSRs need CPL0), loads the IDT and TSS (interrupts.S), and drops to CPL3 with
 * IOPL 3 and interrupts off, where iobench_main runs at native speed even on hosts whose KVM
 * emulates guest ring 0 (PVM). */
#include "long_mode.h"

        .section .note.pvh, "a"
        .balign 4
        .long 4, 4, 18          /* namesz "Xen\0", descsz, XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz "Xen"
        .long pvh_start

        .section .text.entry, "ax"
        .code32
        .globl pvh_start
pvh_start:
        cli
        mov     %ebx, start_info            /* hvm_start_info, from the loader */
        /* PML4[0] -> PDPT; PDPT[0..3] -> four page directories of 2 MiB pages (P|RW|US|PS). */
        mov     $pdpt, %eax
        or      $7, %eax
        mov     %eax, pml4
        mov     $pd, %eax
        or      $7, %eax
        xor     %ecx, %ecx
1:      mov     %eax, pdpt(,%ecx,8)
        add     $4096, %eax
        inc     %ecx
        cmp     $4, %ecx
        jne     1b
        xor     %ecx, %ecx
        mov     $0x87, %eax
        xor     %edx, %edx
2:      mov     %eax, pd(,%ecx,8)
        mov     %edx, pd+4(,%ecx,8)
        add     $0x200000, %eax
        adc     $0, %edx
        inc     %ecx
        cmp     $2048, %ecx
        jne     2b
        enter_long_mode_paging
        /* The TSS descriptors' bases (both TSSs lie below 4 GiB; the upper halves stay 0). */
        .macro  tss_base entry, tss
        mov     $\tss, %eax
        mov     %ax, gdt + \entry + 2
        shr     $16, %eax
        mov     %al, gdt + \entry + 4
        mov     %ah, gdt + \entry + 7
        .endm
        tss_base 0x30, tss
        tss_base 0x40, ap_tss
        lgdt    gdt_pointer
        ljmp    $0x08, $long_mode

        .code64
long_mode:
        mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     %ax, %fs
        mov     %ax, %gs
        mov     $kernel_stack_top, %rsp
        lidt    idt_pointer                 /* gates are filled in by lapic.c when a workload needs them */
        mov     $0x30, %ax
        ltr     %ax                         /* RSP0: where interrupts taken at CPL3 run */
        /* MSR_KVM_SYSTEM_TIME_NEW: the host keeps a pvclock record at this address (bit 0: enable). */
        mov     $0x4b564d01, %ecx
        mov     $pvclock, %eax
        or      $1, %eax
        xor     %edx, %edx
        wrmsr
        pushq   $0x1b                       /* SS: user data */
        pushq   $user_stack_top
        pushq   $0x3002                     /* RFLAGS: IOPL 3, IF 0 */
        pushq   $0x23                       /* CS: user code, 64-bit */
        pushq   $user_entry
        iretq

user_entry:
        mov     $0x1b, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     start_info, %edi
        call    iobench_main
        ud2

        .section .data
        .balign 8
        .globl gdt, gdt_pointer
gdt:
        .quad 0
        .quad 0x00AF9A000000FFFF            /* 0x08 kernel code, 64-bit */
        .quad 0x00CF92000000FFFF            /* 0x10 kernel data */
        .quad 0x00CFF2000000FFFF            /* 0x18 user data, DPL 3 */
        .quad 0x00AFFA000000FFFF            /* 0x20 user code, 64-bit, DPL 3 */
        .quad 0x00CF9A000000FFFF            /* 0x28 kernel code, 32-bit (application processors' way up) */
        .quad 0x0000890000002068            /* 0x30 boot CPU's 64-bit TSS, limit 104 + 8192 (I/O bitmap); */
        .quad 0                             /*      base patched at entry */
        .quad 0x0000890000000067            /* 0x40 application processor's TSS (no I/O bitmap) */
        .quad 0
gdt_end:
gdt_pointer:
        .word gdt_end - gdt - 1
        .long gdt

        .section .bss
        .balign 4096
        .globl pml4
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip 4 * 4096
        .globl pvclock
pvclock: .skip 4096
        .skip 16384
        .globl kernel_stack_top
kernel_stack_top:
        .skip 65536
user_stack_top:
        .balign 8
        .globl start_info
start_info: .skip 8
        .section .note.GNU-stack, "", @progbits
