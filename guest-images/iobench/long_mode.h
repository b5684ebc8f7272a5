/* Included by entry.S and smp.S: the step every CPU takes from 32-bit protected mode into long
 * mode (compatibility mode until a far jump to a 64-bit segment), on entry.S's page tables. */
        .macro  enter_long_mode_paging
        mov     $pml4, %eax
        mov     %eax, %cr3
        mov     %cr4, %eax
        or      $0x20, %eax                 /* PAE */
        mov     %eax, %cr4
        mov     $0xC0000080, %ecx           /* EFER.LME */
        rdmsr
        or      $0x100, %eax
        wrmsr
        mov     %cr0, %eax
        or      $0x80000001, %eax           /* PG | PE */
        mov     %eax, %cr0
        .endm
