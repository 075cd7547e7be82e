/* hello: a PVH guest (32-bit protected mode entry, paging off) that prints one line on COM1
 * and resets through the i8042. The benchmark boots it under corral and QEMU alike. */
        .section .note.Xen, "a", @note
        .balign 4
        .long 4                 /* name size */
        .long 4                 /* descriptor size */
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
2:      mov $0xfe, %al          /* i8042: pulse the CPU reset line */
        out %al, $0x64
3:      hlt
        jmp 3b
msg:    .asciz "corral-guest: hello\n"
