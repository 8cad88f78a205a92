/*
 * Allocation throughput over time, for probe-cli's detach test (run preloaded
 * with libhakmem.so):
 *
 *   throughput
 *
 * One thread mallocs and frees small blocks as fast as it can; the main thread
 * prints "ops N" (operations in the last 100 ms window) every 100 ms, until
 * stdin reaches EOF. A tracer attaching and detaching shows up as a dip in N
 * while attached; after the detach N must come back to what it was.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long ops;
static volatile int stop;

static void *worker(void *arg)
{
	(void)arg;
	unsigned long i = 0;
	void *keep[64] = {0};
	while (!stop) {
		for (int k = 0; k < 256; k++, i++) {
			free(keep[i % 64]);
			keep[i % 64] = malloc(16 + (i * 13) % 1024);
			if (keep[i % 64])
				((char *)keep[i % 64])[0] = 1;
		}
		__atomic_store_n(&ops, i, __ATOMIC_RELAXED);
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

int main(void)
{
	pthread_t w, s;
	pthread_create(&w, NULL, worker, NULL);
	pthread_create(&s, NULL, stdin_eof, NULL);
	unsigned long last = 0;
	struct timespec tick = {0, 100 * 1000 * 1000};
	while (!stop) {
		nanosleep(&tick, NULL);
		unsigned long n = __atomic_load_n(&ops, __ATOMIC_RELAXED);
		printf("ops %lu\n", n - last);
		fflush(stdout);
		last = n;
	}
	pthread_join(w, NULL);
	return 0;
}
