# KVM probe boot sector (loaded at 0x7c00 by the BIOS). It exercises what a boot loader
# does before Linux prints anything: 32-bit protected mode with a TSS, an interrupt taken
# and returned from with iret, then paging and long mode via the EFER MSR. It ends with
# `out 0xf4` of 1, which QEMU's isa-debug-exit device turns into exit status 3.
# A nested KVM that cannot emulate these steps stops with "KVM internal error" instead.
# Rebuild: as --64 -o p.o kvm-probe.S && ld -Ttext 0x7c00 --oformat binary -o p.bin p.o
    .code16
    .globl _start
_start:
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7000, %sp
    lgdtl gdtr
    mov %cr0, %eax
    or $1, %al
    mov %eax, %cr0
    ljmpl $0x08, $pm32
    .code32
pm32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x18, %ax
    ltr %ax
    movl $handler, %eax
    movw %ax, 0x5100
    movw $0x08, 0x5102
    movw $0x8e00, 0x5104
    shr $16, %eax
    movw %ax, 0x5106
    lidt idtr
    int $0x20
    mov $0x1000, %edi
    mov %edi, %cr3
    xor %eax, %eax
    mov $0x1000, %ecx
    rep stosl
    movl $0x2003, 0x1000
    movl $0x3003, 0x2000
    movl $0x0083, 0x3000
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000000, %eax
    mov %eax, %cr0
    ljmp $0x20, $long_mode
handler:
    iret
    .code64
long_mode:
    mov $1, %al
    out %al, $0xf4
1:  hlt
    jmp 1b
    .p2align 3
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff        # 0x08 32-bit code
    .quad 0x00cf92000000ffff        # 0x10 data
    .word 0x67, 0x6000              # 0x18 TSS at 0x6000, limit 0x67
    .byte 0, 0x89, 0, 0
    .quad 0x00209A0000000000        # 0x20 64-bit code
gdtr:
    .word gdtr - gdt - 1
    .long gdt
idt_entry = 0x5000 + 0x20 * 8
idtr:
    .word 0x20 * 8 + 7
    .long 0x5000
