/* fork() 1,000 times from a many-threaded process while every other thread
 * allocates and frees: no allocator state may be inherited half-changed or
 * locked. WORKERS threads hammer malloc/free/realloc/posix_memalign across
 * all size ranges and hand blocks to each other; the main thread forks. Each
 * child (killed by alarm() if it deadlocks) allocates and frees across all
 * sizes, checks and frees blocks the parent allocated before the fork, every
 * 8th starts threads of its own, and every 10th execs: alternately this
 * program in "exec-child" mode (which allocates under the same LD_PRELOAD)
 * and /bin/true. Usage: fork_churn [forks] (default 1000). */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 8
#define SLOTS 64

static volatile int stop;
static long worker_ops;
/* One block per slot, handed between workers (lock-free exchange). */
static void *volatile shared[SLOTS];

static size_t pick_size(uint64_t s)
{
    unsigned kind = (s >> 8) % 100;
    /* At least 64 bytes: every block gets its first 64 bytes written. */
    return kind < 80 ? 64 + (s >> 16) % 1024 : kind < 98 ? 64 + (s >> 16) % 60000 : 600000 + (s >> 16) % 3000000;
}

static void *hammer(void *arg)
{
    uint64_t s = 0x2545f4914f6cdd1dull * ((uintptr_t)arg + 1);
    void *mine[32] = {0};
    long ops = 0;
    for (; !stop; ops++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        int k = s % 32;
        size_t n = pick_size(s);
        switch ((s >> 40) % 8) {
        case 0: { /* hand a block to whoever takes the slot next */
            void *old = __atomic_exchange_n(&shared[s % SLOTS], mine[k], __ATOMIC_ACQ_REL);
            mine[k] = old;
            break;
        }
        case 1: /* n >= 64 */
            if (mine[k]) {
                void *q = realloc(mine[k], n);
                if (q)
                    mine[k] = q;
            }
            break;
        case 2: {
            void *p = NULL;
            free(mine[k]);
            mine[k] = posix_memalign(&p, 64 << (s % 8), n) == 0 ? p : NULL;
            break;
        }
        default:
            free(mine[k]);
            mine[k] = malloc(n);
        }
        if (mine[k])
            memset(mine[k], 0x33, 64);
        /* Bursts with short pauses: on a small machine, eight threads that
         * never sleep starve the forking thread and its children. */
        if (ops % 128 == 127)
            usleep(1000);
    }
    for (int k = 0; k < 32; k++)
        free(mine[k]);
    __sync_fetch_and_add(&worker_ops, ops);
    return NULL;
}

static void *child_thread(void *arg)
{
    for (int i = 0; i < 5000; i++) {
        void *p = malloc(1 + i % 5000);
        if (!p)
            return (void *)1;
        memset(p, 1, 1 + i % 5000 < 64 ? 1 + i % 5000 : 64);
        free(p);
    }
    return arg;
}

/* Allocates and frees a little of everything; 0 on success. */
static int allocate_some(int seed)
{
    void *keep[128];
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 128; i++) {
            size_t n = pick_size(0x9e3779b97f4a7c15ull * (uint64_t)(seed * 512 + round * 128 + i + 1));
            keep[i] = malloc(n);
            if (!keep[i])
                return 3;
            memset(keep[i], i, n < 256 ? n : 256);
        }
        for (int i = 0; i < 128; i++) {
            if (((unsigned char *)keep[i])[0] != (unsigned char)i)
                return 6;
            free(keep[i]);
        }
    }
    return 0;
}

enum { INHERITED = 16 };

static int child_work(int f, char *self, void **inherited)
{
    alarm(20);
    int rc = allocate_some(f);
    if (rc)
        return rc;
    for (int i = 0; i < INHERITED; i++) {
        if (((unsigned char *)inherited[i])[0] != (unsigned char)(f + i))
            return 4;
        free(inherited[i]);
    }
    /* Blocks the workers were passing around at the fork: free the ones present. */
    for (int i = 0; i < SLOTS; i += 7)
        free(__atomic_exchange_n(&shared[i], NULL, __ATOMIC_ACQ_REL));
    if (f % 8 == 0) {
        pthread_t t[2];
        void *ret;
        for (int i = 0; i < 2; i++)
            if (pthread_create(&t[i], NULL, child_thread, NULL))
                return 5;
        for (int i = 0; i < 2; i++)
            if (pthread_join(t[i], &ret) || ret)
                return 5;
    }
    if (f % 10 == 0) {
        if (f % 20 == 0)
            execl(self, self, "exec-child", (char *)NULL);
        else
            execl("/bin/true", "true", (char *)NULL);
        return 7;
    }
    return 0;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "exec-child") == 0)
        return allocate_some(7) || child_thread(NULL) != NULL;
    int forks = argc > 1 ? atoi(argv[1]) : 1000;
    double t0 = now();
    pthread_t w[WORKERS];
    for (uintptr_t i = 0; i < WORKERS; i++)
        pthread_create(&w[i], NULL, hammer, (void *)i);

    int failures = 0, execs = 0;
    for (int f = 0; f < forks && failures < 5; f++) {
        void *inherited[INHERITED];
        for (int i = 0; i < INHERITED; i++) {
            size_t n = i == 0 ? 2000000 : i == 1 ? 300000 : 16 + (size_t)i * 300;
            inherited[i] = malloc(n);
            memset(inherited[i], f + i, 16);
        }
        if (f % 3)
            usleep(f % 7 * 50); /* vary where the workers are when fork happens */
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0)
            _exit(child_work(f, argv[0], inherited));
        execs += f % 10 == 0;
        int status;
        if (waitpid(pid, &status, 0) != pid) {
            perror("waitpid");
            return 2;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            failures++;
            if (WIFSIGNALED(status))
                fprintf(stderr, "FAIL: fork %d: child killed by signal %d%s\n", f, WTERMSIG(status),
                        WTERMSIG(status) == SIGALRM ? " (deadlocked: timed out)" : "");
            else
                fprintf(stderr, "FAIL: fork %d: child exited with %d\n", f, WEXITSTATUS(status));
        }
        for (int i = 0; i < INHERITED; i++)
            free(inherited[i]);
    }
    stop = 1;
    for (int i = 0; i < WORKERS; i++)
        pthread_join(w[i], NULL);
    for (int i = 0; i < SLOTS; i++)
        free(shared[i]);
    if (failures) {
        fprintf(stderr, "fork_churn: %d failed children\n", failures);
        return 1;
    }
    /* Workers blocked by a lock a fork left held do next to nothing; a fixed
     * 100,000 failed a 50-fork debug run on a loaded machine (96,899). */
    if (worker_ops < 500L * forks) {
        fprintf(stderr, "FAIL: the workers did only %ld operations during the forks\n", worker_ops);
        return 1;
    }
    printf("fork_churn: %d forks (%d followed by exec) from %d+1 threads in %.1f s; workers did %ld operations\n",
           forks, execs, WORKERS, now() - t0, worker_ops);
    return 0;
}
