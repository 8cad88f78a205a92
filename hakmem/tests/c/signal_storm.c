/* Signal handlers that do not allocate are unaffected by malloc: while
 * WORKERS threads malloc / realloc / free heavily (every block patterned and
 * checked), a signaller thread sends SIGUSR1 to the workers with
 * pthread_kill as fast as it can and an interval timer raises SIGALRM every
 * 100 µs. The handlers count, touch memory and clobber errno (restoring it),
 * without allocating. Checks: no deadlock (a watchdog aborts after 60 s), no
 * corrupted block, errno as malloc left it, both signals delivered thousands
 * of times, the workers kept allocating. Usage: signal_storm [seconds] (3);
 * on a loaded machine it runs on until the signal and allocation counts mean
 * something (at most 45 s). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 3

static volatile sig_atomic_t stop;
static volatile long usr1_count, alrm_count;
static volatile unsigned char scratch[4096];
static volatile int failed;
static long ops_total;
static long live_ops; /* ops so far, all workers (for the minimum-run check) */
static pthread_t workers[WORKERS];

static void handler(int sig)
{
    int saved = errno;
    errno = EINTR; /* a handler that clobbers errno must not confuse malloc's caller */
    for (int i = 0; i < 64; i++)
        scratch[(i * 67 + sig) % sizeof scratch]++;
    if (sig == SIGUSR1)
        __sync_fetch_and_add(&usr1_count, 1);
    else
        __sync_fetch_and_add(&alrm_count, 1);
    errno = saved;
}

static unsigned char pat(uintptr_t tag, size_t i)
{
    return (unsigned char)(tag * 0x9e3779b1u >> 24) ^ (unsigned char)i;
}

static void *worker(void *arg)
{
    uint64_t s = 0x2545f4914f6cdd1dull * ((uintptr_t)arg + 1);
    enum { N = 128 };
    unsigned char *b[N] = {0};
    size_t n[N] = {0};
    uintptr_t tag[N] = {0};
    long ops = 0;
    while (!stop) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        int k = s % N;
        if (b[k]) {
            size_t step = n[k] > 2048 ? 251 : 1;
            for (size_t i = 0; i < n[k]; i += step)
                if (b[k][i] != pat(tag[k], i)) {
                    fprintf(stderr, "FAIL: block of %zu bytes corrupt at byte %zu\n", n[k], i);
                    failed = 1;
                    stop = 1;
                }
        }
        unsigned kind = (s >> 8) % 100;
        size_t sz = kind < 85 ? 1 + (s >> 16) % 600 : kind < 99 ? 1 + (s >> 16) % 70000 : 600000 + (s >> 16) % 2000000;
        errno = 0;
        if (b[k] && (s >> 40) % 4 == 0) {
            unsigned char *q = realloc(b[k], sz);
            if (!q) {
                failed = 1;
                break;
            }
            b[k] = q;
        } else {
            free(b[k]);
            b[k] = malloc(sz);
            if (!b[k]) {
                failed = 1;
                break;
            }
        }
        if (errno != 0) {
            fprintf(stderr, "FAIL: errno %d after a successful malloc/realloc\n", errno);
            failed = 1;
        }
        n[k] = sz;
        tag[k] = (uintptr_t)arg * 1000003 + (uintptr_t)ops;
        size_t step = sz > 2048 ? 251 : 1;
        for (size_t i = 0; i < sz; i += step)
            b[k][i] = pat(tag[k], i);
        ops++;
        if (ops % 256 == 0)
            __atomic_fetch_add(&live_ops, 256, __ATOMIC_RELAXED);
    }
    for (int k = 0; k < N; k++)
        free(b[k]);
    __sync_fetch_and_add(&ops_total, ops);
    return NULL;
}

static void *signaller(void *arg)
{
    (void)arg;
    unsigned i = 0;
    while (!stop) {
        pthread_kill(workers[i++ % WORKERS], SIGUSR1);
        if (i % 16 == 0)
            sched_yield();
    }
    return NULL;
}

static void *watchdog(void *arg)
{
    (void)arg;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        sleep(1); /* cut short by the signals: measure, not count */
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (t.tv_sec - t0.tv_sec < 60);
    fprintf(stderr, "FAIL: signal_storm still running after 60 s (deadlock?)\n");
    abort();
}

int main(int argc, char **argv)
{
    int seconds = argc > 1 ? atoi(argv[1]) : 3;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: interrupted calls see EINTR */
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    pthread_t wd, sig;
    pthread_create(&wd, NULL, watchdog, NULL);
    pthread_detach(wd);
    for (uintptr_t i = 0; i < WORKERS; i++)
        pthread_create(&workers[i], NULL, worker, (void *)i);
    pthread_create(&sig, NULL, signaller, NULL);
    struct itimerval it = {{0, 100}, {0, 100}};
    setitimer(ITIMER_REAL, &it, NULL);
    struct timespec left = {seconds, 0};
    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        ; /* SIGALRM interrupts the sleep: sleep on */
    /* On a loaded machine the storm may be thin after `seconds`: it goes on
     * (up to 45 s, inside the watchdog's 60) until it means something. */
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while ((usr1_count < 1000 || alrm_count < 100 || __atomic_load_n(&live_ops, __ATOMIC_RELAXED) < 10000) &&
           (clock_gettime(CLOCK_MONOTONIC, &t), t.tv_sec - t0.tv_sec < 45 - seconds)) {
        struct timespec tick = {0, 50 * 1000 * 1000};
        while (nanosleep(&tick, &tick) != 0 && errno == EINTR)
            ;
    }
    stop = 1;
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    pthread_join(sig, NULL);
    for (int i = 0; i < WORKERS; i++)
        pthread_join(workers[i], NULL);
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    printf("signal_storm: %.1f s, %ld SIGUSR1 and %ld SIGALRM handled while %d threads did %ld allocations\n",
           (double)(end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9, usr1_count, alrm_count,
           WORKERS, ops_total);
    if (failed)
        return 1;
    if (usr1_count < 1000 || alrm_count < 100 || ops_total < 10000) {
        fprintf(stderr, "FAIL: too few signals or allocations to mean anything\n");
        return 1;
    }
    return 0;
}
