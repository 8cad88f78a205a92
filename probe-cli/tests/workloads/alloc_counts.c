/*
 * A workload with known counts, for probe-cli's integration tests (run preloaded
 * with libhakmem.so and HAKMEM_BIGCACHE=off).
 *
 *   alloc_counts LARGE SMALL [--wait]
 *
 * LARGE times: malloc(2 MiB), touch every page, free (served by the span heap)
 * SMALL times: malloc(1..256 bytes), free
 *
 * With --wait it prints "ready", waits for one byte on stdin before the work (so a
 * tracer can attach to a quiet process), prints "done", and waits for stdin's EOF
 * before exiting (so the tracer reads its counts while the process still lives).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LARGE_SIZE (2u << 20)
#define PAGE 4096u

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s LARGE SMALL [--wait]\n", argv[0]);
		return 2;
	}
	long large = atol(argv[1]), small = atol(argv[2]);
	int wait = argc > 3 && strcmp(argv[3], "--wait") == 0;
	char byte;

	if (wait) {
		printf("ready\n");
		fflush(stdout);
		if (read(0, &byte, 1) != 1)
			return 1;
	}
	for (long i = 0; i < large; i++) {
		volatile char *p = malloc(LARGE_SIZE);
		if (!p)
			return 1;
		for (unsigned off = 0; off < LARGE_SIZE; off += PAGE)
			p[off] = (char)off;
		free((void *)p);
	}
	for (long i = 0; i < small; i++) {
		volatile char *p = malloc(1 + (size_t)(i % 256));
		if (!p)
			return 1;
		p[0] = 1;
		free((void *)p);
	}
	if (wait) {
		printf("done\n");
		fflush(stdout);
		while (read(0, &byte, 1) > 0)
			;
	}
	return 0;
}
