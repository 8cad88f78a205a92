/*
 * A workload with a known number of memory syscalls, for probe-cli's
 * integration tests (run preloaded with libhakmem.so, HAKMEM_BIGCACHE=off,
 * HAKMEM_THP=refuse, HAKMEM_DISABLE_ELO=1 and HAKMEM_BACKGROUND_PURGE=0, so
 * that hakmem makes no call the work does not ask for).
 *
 *   os_calls HUGE FOREIGN [--wait]
 *
 * HUGE times:    malloc(80 MiB), touch its first page, free: a block above the
 *                span heap's 64 MiB has a mapping of its own, so hakmem makes
 *                one mmap and one munmap for it
 * FOREIGN times: mmap(64 KiB) and munmap it directly, not through hakmem
 *
 * With --wait, as alloc_counts: "ready", one byte on stdin, the work, "done",
 * then stdin's EOF before exiting.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HUGE_SIZE (80u << 20)
#define FOREIGN_SIZE (64u << 10)

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s HUGE FOREIGN [--wait]\n", argv[0]);
		return 2;
	}
	long huge = atol(argv[1]), foreign = atol(argv[2]);
	int wait = argc > 3 && strcmp(argv[3], "--wait") == 0;
	char byte;

	if (wait) {
		printf("ready\n");
		fflush(stdout);
		if (read(0, &byte, 1) != 1)
			return 1;
	}
	for (long i = 0; i < huge; i++) {
		volatile char *p = malloc(HUGE_SIZE);
		if (!p)
			return 1;
		p[0] = 1;
		free((void *)p);
	}
	for (long i = 0; i < foreign; i++) {
		char *p = mmap(NULL, FOREIGN_SIZE, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return 1;
		p[0] = 1;
		munmap(p, FOREIGN_SIZE);
	}
	if (wait) {
		printf("done\n");
		fflush(stdout);
		while (read(0, &byte, 1) > 0)
			;
	}
	return 0;
}
