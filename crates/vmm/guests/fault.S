/* fault: a 64-bit guest whose first instruction after one line of output cannot run: INT3
 * with an empty IDT (a triple fault on hardware KVM, an emulation failure on KVM-PVM). The VMM
 * must report it with the guest's RIP (the address of `bad`). */
        .text
        .code64
        .globl _start
_start:
        mov $0x3f8, %dx
        mov $'!', %al
        out %al, %dx
        mov $'\n', %al
        out %al, %dx
        .globl bad
bad:    int3
        hlt
