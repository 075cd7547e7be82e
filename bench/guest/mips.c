/* A compute-bound guest loop for bench/vm-boot-emu.sh: runs a fixed number of instructions
 * (7 per iteration: a load, an add, a xor with a memory operand, a store, an add, and
 * the loop's dec/jnz) between two CLOCK_MONOTONIC reads and prints millions of guest
 * instructions per second. It also prints a start line before the loop so the host can time
 * the loop by its own clock (the end is the result line): a guest clock is only as good as
 * the VMM's TSC. Built static so it runs from a busybox initramfs. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define PER_ITERATION 7

int main(int argc, char **argv)
{
	unsigned long iterations = argc > 1 ? strtoul(argv[1], 0, 0) : 20000000UL;
	static unsigned long cell[2] = { 1, 2 };
	struct timespec a, b;
	unsigned long n = iterations, x = 0;

	printf("CORRAL-MIPS-START\n");
	fflush(stdout);
	clock_gettime(CLOCK_MONOTONIC, &a);
	__asm__ volatile(
		"1:\n\t"
		"mov (%2), %%rax\n\t"
		"add %%rax, %0\n\t"
		"xor 8(%2), %0\n\t"
		"mov %0, 8(%2)\n\t"
		"add $1, %%rax\n\t"
		"dec %1\n\t"
		"jnz 1b\n\t"
		: "+r"(x), "+r"(n)
		: "r"(cell)
		: "rax", "memory", "cc");
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
	printf("CORRAL-MIPS %.1f instructions=%lu ns=%.0f check=%lx\n",
	       PER_ITERATION * (double)iterations / ns * 1e3,
	       PER_ITERATION * iterations, ns, x);
	return 0;
}
