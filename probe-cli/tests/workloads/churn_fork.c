/*
 * A busy, changing process for probe-cli's stress tests (run preloaded with
 * libhakmem.so):
 *
 *   churn_fork SECONDS
 *
 * Prints "ready" and waits for one byte on stdin (so a tracer can attach), then
 * for SECONDS: rounds of 4 short-lived threads that malloc/free, and every 5th
 * round a fork whose child allocates, starts a thread and exits (every other
 * one by exec of /bin/true). Then it prints "done rounds=R forks=F threads=T"
 * and exits on its own, while the tracer is still attached: status 0 if every
 * child and thread succeeded, 1 otherwise.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void *work(void *arg)
{
	size_t n = (size_t)arg;
	for (size_t i = 0; i < 2000; i++) {
		void *p = malloc(1 + (i * 37 + n) % 3000);
		if (!p)
			return (void *)1;
		memset(p, 1, 1);
		free(p);
	}
	void *big = malloc(600000 + n);
	if (!big)
		return (void *)1;
	memset(big, 2, 4096);
	free(big);
	return NULL;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 2;
	char byte;
	printf("ready\n");
	fflush(stdout);
	if (read(0, &byte, 1) != 1)
		return 1;
	int failures = 0, rounds = 0, forks = 0, threads = 0;
	double end = now() + seconds;
	while (now() < end) {
		pthread_t t[4];
		for (int i = 0; i < 4; i++, threads++)
			if (pthread_create(&t[i], NULL, work, (void *)(size_t)(rounds * 4 + i)))
				failures++;
		for (int i = 0; i < 4; i++) {
			void *ret;
			if (pthread_join(t[i], &ret) || ret)
				failures++;
		}
		if (rounds % 5 == 0) {
			pid_t pid = fork();
			if (pid == 0) {
				alarm(20);
				pthread_t c;
				void *ret;
				if (work((void *)7) || pthread_create(&c, NULL, work, (void *)8) || pthread_join(c, &ret) || ret)
					_exit(3);
				if (forks % 2)
					execl("/bin/true", "true", (char *)NULL);
				_exit(0);
			}
			int status;
			forks++;
			if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
				failures++;
		}
		rounds++;
	}
	printf("done rounds=%d forks=%d threads=%d failures=%d\n", rounds, forks, threads, failures);
	fflush(stdout);
	return failures != 0;
}
