/* idle: a PVH guest that prints one line and then halts with interrupts off, so the VM stays
 * up (for measuring the VMM's footprint and driving its control socket). */
        .section .note.Xen, "a", @note
        .balign 4
        .long 4
        .long 4
        .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
        .asciz "Xen"
        .long _start

        .text
        .code32
        .globl _start
_start:
        mov $msg, %esi
        mov $0x3f8, %dx
1:      lodsb
        test %al, %al
        jz 2f
        out %al, %dx
        jmp 1b
2:      cli
        hlt
        jmp 2b
msg:    .asciz "corral-guest: idle\n"
