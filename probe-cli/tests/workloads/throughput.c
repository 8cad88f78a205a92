/*
 * Allocation throughput over time, for probe-cli's detach test (run preloaded
 * with libhakmem.so):
 *
 *   throughput [THREADS]
 *
 * THREADS workers (default 1) malloc and free small blocks as fast as they
 * can; the main thread prints "ops N" (operations of all workers in the last
 * 100 ms window) every 100 ms, until stdin reaches EOF. scripts/trace-overhead.sh
 * runs it with 2 threads, traced and untraced. A tracer attaching and detaching shows up as a dip in N
 * while attached; after the detach N must come back to what it was.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 64

/* One counter per worker, each on its own cache line. */
static struct {
	volatile unsigned long n;
	char pad[56];
} ops[MAX_THREADS];
static volatile int stop;

static void *worker(void *arg)
{
	long id = (long)arg;
	unsigned long i = 0;
	void *keep[64] = {0};
	while (!stop) {
		for (int k = 0; k < 256; k++, i++) {
			free(keep[i % 64]);
			keep[i % 64] = malloc(16 + (i * 13) % 1024);
			if (keep[i % 64])
				((char *)keep[i % 64])[0] = 1;
		}
		__atomic_store_n(&ops[id].n, i, __ATOMIC_RELAXED);
	}
	for (int k = 0; k < 64; k++)
		free(keep[k]);
	return NULL;
}

static void *stdin_eof(void *arg)
{
	(void)arg;
	char b;
	while (read(0, &b, 1) > 0)
		;
	stop = 1;
	return NULL;
}

int main(int argc, char **argv)
{
	long threads = argc > 1 ? atol(argv[1]) : 1;
	if (threads < 1 || threads > MAX_THREADS) {
		fprintf(stderr, "usage: %s [THREADS: 1..%d]\n", argv[0], MAX_THREADS);
		return 2;
	}
	pthread_t w[MAX_THREADS], s;
	for (long t = 0; t < threads; t++)
		pthread_create(&w[t], NULL, worker, (void *)t);
	pthread_create(&s, NULL, stdin_eof, NULL);
	unsigned long last = 0;
	struct timespec tick = {0, 100 * 1000 * 1000};
	while (!stop) {
		nanosleep(&tick, NULL);
		unsigned long n = 0;
		for (long t = 0; t < threads; t++)
			n += __atomic_load_n(&ops[t].n, __ATOMIC_RELAXED);
		printf("ops %lu\n", n - last);
		fflush(stdout);
		last = n;
	}
	for (long t = 0; t < threads; t++)
		pthread_join(w[t], NULL);
	return 0;
}
