/*
 * A workload with known realloc counts, for probe-cli's realloc test (run
 * preloaded with libhakmem.so):
 *
 *   realloc_counts IN_PLACE MOVED
 *
 * IN_PLACE times: malloc(1000), realloc to 900 (hakmem keeps a block that
 * shrinks by less than half in place: same pointer), free.
 * MOVED times: malloc(64), realloc to 4000 (a bigger size class: a new block),
 * free. Prints "in_place N moved M" as the pointers say, so the test checks
 * what really happened, not what it expects.
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s IN_PLACE MOVED\n", argv[0]);
		return 2;
	}
	long in_place = atol(argv[1]), moved = atol(argv[2]);
	long same = 0, other = 0;
	for (long i = 0; i < in_place + moved; i++) {
		int grow = i >= in_place;
		char *p = malloc(grow ? 64 : 1000);
		if (!p)
			return 1;
		p[0] = 1;
		char *q = realloc(p, grow ? 4000 : 900);
		if (!q)
			return 1;
		if (q == p)
			same++;
		else
			other++;
		free(q);
	}
	printf("in_place %ld moved %ld\n", same, other);
	return 0;
}
