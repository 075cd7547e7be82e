/* long: entered by the VMM in 64-bit mode (Linux 64-bit protocol: paging on, identity map of
 * the first GiB). At CPL0 it does only setup: user bit on the boot page tables, a mapping for
 * the virtio-mmio window, its own GDT; then IRETQ to CPL3 with IOPL 3. At CPL3 (native speed
 * on KVM-PVM) it computes, touches pages, reads an MMIO register, prints, and resets. */
        .set COM1, 0x3f8
        .set TOUCH_BASE, 0x800000       /* pages the guest dirties */
        .set TOUCH_PAGES, 64
        .set MMIO_ADDR, 0xd0000000

        .text
        .code64
        .globl _start
_start:
        /* user bit on PML4[0], PDPT[0] and the 512 PD entries the VMM wrote */
        orq $4, 0x9000
        orq $4, 0xa000
        mov $0xb000, %rdi
        mov $512, %ecx
1:      orq $4, (%rdi)
        add $8, %rdi
        dec %ecx
        jnz 1b
        /* PDPT[3] -> mmio_pd, one 2 MiB uncached user page at 0xd0000000 */
        lea mmio_pd(%rip), %rax
        or $7, %rax
        mov %rax, 0xa018
        mov $MMIO_ADDR | 0x9f, %rax
        mov %rax, mmio_pd + 8 * 128(%rip)
        mov %cr3, %rax
        mov %rax, %cr3
        lgdt gdtr(%rip)
        /* IRETQ frame: SS, RSP, RFLAGS (IOPL 3, IF 0), CS, RIP */
        pushq $0x1b
        lea user_stack_top(%rip), %rax
        push %rax
        pushq $0x3002
        pushq $0x23
        lea user(%rip), %rax
        push %rax
        iretq

user:   lea m_cpl(%rip), %rsi
        call puts
        mov %cs, %ax
        and $3, %al
        add $'0', %al
        call putc
        mov $'\n', %al
        call putc

        /* sum of i*i for i = 1..10,000,000, wrapping */
        xor %rbx, %rbx
        mov $10000000, %rcx
2:      mov %rcx, %rax
        imul %rax, %rax
        add %rax, %rbx
        dec %rcx
        jnz 2b
        lea m_sum(%rip), %rsi
        call puts
        mov %rbx, %rax
        call puthex

        /* dirty TOUCH_PAGES pages */
        mov $TOUCH_BASE, %rdi
        mov $TOUCH_PAGES, %ecx
3:      movq %rcx, (%rdi)
        add $4096, %rdi
        dec %ecx
        jnz 3b
        lea m_touch(%rip), %rsi
        call puts

        /* an MMIO read and write */
        mov $MMIO_ADDR, %rdi
        movl (%rdi), %eax
        mov %rax, %rbx
        movl $0, 0x70(%rdi)     /* virtio-mmio Status = 0 (reset): harmless everywhere */
        lea m_mmio(%rip), %rsi
        call puts
        mov %rbx, %rax
        call puthex

        lea m_done(%rip), %rsi
        call puts
        mov $0xfe, %al
        out %al, $0x64
4:      jmp 4b

/* putc: AL to COM1 */
putc:   push %rdx
        mov $COM1, %dx
        out %al, %dx
        pop %rdx
        ret
/* puts: NUL-terminated string at RSI */
puts:   lodsb
        test %al, %al
        jz 5f
        call putc
        jmp puts
5:      ret
/* puthex: RAX as 16 hex digits and a newline */
puthex: mov %rax, %rdx
        mov $16, %ecx
6:      rol $4, %rdx
        mov %dl, %al
        and $0xf, %al
        add $'0', %al
        cmp $'9', %al
        jbe 7f
        add $('a' - '9' - 1), %al
7:      call putc
        dec %ecx
        jnz 6b
        mov $'\n', %al
        call putc
        ret

        .balign 8
gdt:    .quad 0
        .quad 0x00af9b000000ffff        /* 0x08 kernel code, 64-bit */
        .quad 0x00cf93000000ffff        /* 0x10 kernel data */
        .quad 0x00cff3000000ffff        /* 0x18 user data, DPL 3 */
        .quad 0x00affb000000ffff        /* 0x20 user code, 64-bit, DPL 3 */
gdt_end:
gdtr:   .word gdt_end - gdt - 1
        .quad gdt

m_cpl:   .asciz "corral-guest: cpl="
m_sum:   .asciz "corral-guest: sum="
m_touch: .asciz "corral-guest: touched pages\n"
m_mmio:  .asciz "corral-guest: mmio="
m_done:  .asciz "corral-guest: done\n"

        .bss
        .balign 4096
mmio_pd:        .skip 4096
user_stack:     .skip 4096
user_stack_top:
