/* fork() while other threads allocate: no allocator lock may be inherited
 * held. Worker threads hammer malloc/free (small, medium, large, aligned);
 * the main thread forks repeatedly; each child allocates a lot, frees blocks
 * the parent allocated before the fork, starts a thread of its own, and
 * exits with _exit. A child that deadlocks is killed by alarm() and counts as
 * a failure. Finally fork+exec of /bin/true. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORKERS 3
#define FORKS 50

static volatile int stop;
static long worker_ops; /* malloc/free pairs done by the workers */

static void *hammer(void *arg)
{
    uint64_t s = 0x2545f4914f6cdd1dull * ((uintptr_t)arg + 1);
    void *slots[128] = {0};
    long ops = 0;
    for (; !stop; ops++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        int k = s % 128;
        free(slots[k]);
        unsigned kind = (s >> 8) % 100;
        size_t n = kind < 90 ? 1 + (s >> 16) % 1024 : kind < 98 ? 1 + (s >> 16) % 100000 : 600000;
        if (kind == 99) {
            void *p = NULL;
            slots[k] = posix_memalign(&p, 4096, n) == 0 ? p : NULL;
        } else {
            slots[k] = malloc(n);
        }
        if (slots[k])
            memset(slots[k], 0x33, n < 256 ? n : 256);
    }
    for (int k = 0; k < 128; k++)
        free(slots[k]);
    __sync_fetch_and_add(&worker_ops, ops);
    return NULL;
}

static void *child_thread(void *arg)
{
    for (int i = 0; i < 20000; i++) {
        void *p = malloc(1 + i % 3000);
        if (!p)
            return (void *)1;
        free(p);
    }
    return arg;
}

/* Runs in the child; returns the exit status. */
static int child_work(void **inherited, int n_inherited)
{
    alarm(20); /* a deadlocked child is killed, and the parent sees the signal */
    void *keep[512];
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 512; i++) {
            size_t n = (i % 64 == 0) ? 700000 : 1 + (size_t)(i * 37 + round) % 4000;
            keep[i] = malloc(n);
            if (!keep[i])
                return 3;
            memset(keep[i], i, n < 128 ? n : 128);
        }
        for (int i = 0; i < 512; i++)
            free(keep[i]);
    }
    /* Blocks the parent's main thread allocated before fork are valid here. */
    for (int i = 0; i < n_inherited; i++) {
        if (((unsigned char *)inherited[i])[0] != (unsigned char)i)
            return 4;
        free(inherited[i]);
    }
    pthread_t t;
    void *ret = (void *)1;
    if (pthread_create(&t, NULL, child_thread, NULL) || pthread_join(t, &ret) || ret != NULL)
        return 5;
    return 0;
}

int main(void)
{
    pthread_t w[WORKERS];
    for (uintptr_t i = 0; i < WORKERS; i++)
        pthread_create(&w[i], NULL, hammer, (void *)i);

    int failures = 0;
    for (int f = 0; f < FORKS; f++) {
        enum { INHERITED = 32 };
        void *inherited[INHERITED];
        for (int i = 0; i < INHERITED; i++) {
            size_t n = (i == 0) ? 800000 : 16 + (size_t)i * 100;
            inherited[i] = malloc(n);
            memset(inherited[i], i, 16);
        }
        usleep(f % 5 * 200); /* vary where the workers are when fork happens */
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0)
            _exit(child_work(inherited, INHERITED));
        int status;
        if (waitpid(pid, &status, 0) != pid) {
            perror("waitpid");
            return 2;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            failures++;
            if (WIFSIGNALED(status))
                fprintf(stderr, "FAIL: fork child %d killed by signal %d%s\n", f, WTERMSIG(status),
                        WTERMSIG(status) == SIGALRM ? " (deadlock: timed out)" : "");
            else
                fprintf(stderr, "FAIL: fork child %d exited with %d\n", f, WEXITSTATUS(status));
        }
        for (int i = 0; i < INHERITED; i++)
            free(inherited[i]);
    }

    /* fork + exec while the workers still run. */
    for (int i = 0; i < 10; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            execl("/bin/true", "true", (char *)NULL);
            _exit(127);
        }
        int status;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "FAIL: fork+exec of /bin/true: status %#x\n", status);
            failures++;
        }
    }

    stop = 1;
    for (int i = 0; i < WORKERS; i++)
        pthread_join(w[i], NULL);
    if (failures) {
        fprintf(stderr, "fork_threads: %d failures\n", failures);
        return 1;
    }
    /* The forks must really have happened while the workers allocated. */
    if (worker_ops < 10000) {
        fprintf(stderr, "FAIL: workers did only %ld malloc/free pairs during the forks\n", worker_ops);
        return 1;
    }
    printf("fork_threads: %d forks and 10 fork+exec while %d threads allocate (%ld malloc/free pairs)\n", FORKS,
           WORKERS, worker_ops);
    return 0;
}
