/* notify: a PVH guest that writes queue index 0 to the notify register of the first
 * virtio-mmio device (0xd0000000 + 0x50), prints one line and halts with interrupts off, so
 * a test can see whether the write reached the device through KVM's ioeventfd (no MMIO exit)
 * and then stop the VM. */
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
        movl $0, 0xd0000050     /* QueueNotify = 0 */
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
msg:    .asciz "corral-guest: notified\n"
