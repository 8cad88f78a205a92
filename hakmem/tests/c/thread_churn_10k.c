/* 10,000 threads created and destroyed while allocating and freeing across
 * threads, with RSS bounded (the "mleak" question: does memory grow with the
 * number of threads ever started?). Threads run CONCURRENT at a time; each
 * allocates a mix of sizes, frees most of them itself, frees blocks that
 * earlier (by now usually exited) threads left in a shared mailbox — remote
 * frees into abandoned segments — and leaves some of its own there. Every
 * block carries a pattern checked before it is freed. RSS is sampled every
 * 256 threads: its peak over the second half of the run must not exceed its
 * peak over the first half (after the first 1,000 threads) by more than
 * SLACK_MIB — memory that grows with the number of threads ever started
 * would (32 MiB over 5,000 threads is 6.5 KiB a thread) — nor LIMIT_MIB.
 * Usage: thread_churn_10k [threads] (default 10000). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CONCURRENT 8
#define MAILBOX 4096
#define SLACK_MIB 32
#define LIMIT_MIB 256

struct block {
    unsigned char *p;
    size_t n;
    uint32_t tag;
};

static struct block mailbox[MAILBOX];
static int mailbox_len;
static pthread_mutex_t mailbox_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int corrupt;
static long remote_frees;

static unsigned char pat(uint32_t tag, size_t i)
{
    return (unsigned char)(tag * 2654435761u >> 24) ^ (unsigned char)i ^ (unsigned char)(i >> 8);
}

static void fill(struct block *b)
{
    size_t step = b->n > 4096 ? 509 : 1;
    for (size_t i = 0; i < b->n; i += step)
        b->p[i] = pat(b->tag, i);
    b->p[b->n - 1] = pat(b->tag, b->n - 1);
}

static void check_free(struct block *b)
{
    size_t step = b->n > 4096 ? 509 : 1;
    for (size_t i = 0; i < b->n; i += step)
        if (b->p[i] != pat(b->tag, i))
            corrupt = 1;
    if (b->p[b->n - 1] != pat(b->tag, b->n - 1))
        corrupt = 1;
    free(b->p);
}

static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * 4096;
}

static void *worker(void *arg)
{
    uint32_t id = (uint32_t)(uintptr_t)arg;
    uint64_t s = 0x9e3779b97f4a7c15ull ^ ((uint64_t)id << 17);
    enum { N = 160 };
    struct block mine[N];
    int n = 0;
    for (int i = 0; i < N; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        unsigned kind = s % 100;
        size_t sz = kind < 70 ? 1 + (s >> 8) % 512 : kind < 95 ? 513 + (s >> 8) % 16000 : 16001 + (s >> 8) % 200000;
        if (id % 97 == 0 && i == 0)
            sz = 2u << 20; /* now and then a large block */
        struct block b = {malloc(sz), sz, id * 1000 + i};
        if (!b.p) {
            corrupt = 2;
            return NULL;
        }
        fill(&b);
        mine[n++] = b;
        if (i % 3 == 2) { /* free one from the middle */
            int k = n / 2;
            check_free(&mine[k]);
            mine[k] = mine[--n];
        }
    }
    /* Take what earlier threads left, leave a few of ours. */
    struct block taken[32];
    int nt = 0, left = 0;
    pthread_mutex_lock(&mailbox_lock);
    while (nt < 32 && mailbox_len > 0)
        taken[nt++] = mailbox[--mailbox_len];
    for (int i = 0; i < n && left < 16 && mailbox_len < MAILBOX; i += 4, left++) {
        mailbox[mailbox_len++] = mine[i];
        mine[i].p = NULL;
    }
    pthread_mutex_unlock(&mailbox_lock);
    for (int i = 0; i < nt; i++)
        check_free(&taken[i]);
    __sync_fetch_and_add(&remote_frees, nt);
    for (int i = 0; i < n; i++)
        if (mine[i].p)
            check_free(&mine[i]);
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
    int total = argc > 1 ? atoi(argv[1]) : 10000;
    double t0 = now();
    size_t rss_warm = 0, peak1 = 0, peak2 = 0;
    for (int base = 0; base < total; base += CONCURRENT) {
        pthread_t t[CONCURRENT];
        int k = 0;
        for (; k < CONCURRENT && base + k < total; k++)
            if (pthread_create(&t[k], NULL, worker, (void *)(uintptr_t)(base + k))) {
                perror("pthread_create");
                return 2;
            }
        for (int i = 0; i < k; i++)
            pthread_join(t[i], NULL);
        if (corrupt) {
            fprintf(stderr, "FAIL: %s after %d threads\n",
                    corrupt == 2 ? "malloc returned NULL" : "a block's pattern changed", base + k);
            return 1;
        }
        if (base + k == 1000 || (base + k < 1000 && base + k >= total))
            rss_warm = rss_bytes();
        if (base + k > 1000 && base % 256 == 0) {
            size_t r = rss_bytes(), *peak = base + k <= total / 2 ? &peak1 : &peak2;
            *peak = r > *peak ? r : *peak;
        }
    }
    for (int i = 0; i < mailbox_len; i++)
        check_free(&mailbox[i]);
    size_t rss_end = rss_bytes();
    peak2 = rss_end > peak2 ? rss_end : peak2;
    double dt = now() - t0;
    printf("thread_churn_10k: %d threads (%d at a time) in %.1f s, %ld cross-thread frees; "
           "RSS %zu MiB after 1000 threads, peak %zu MiB in the first half, %zu MiB in the second, end %zu MiB\n",
           total, CONCURRENT, dt, remote_frees, rss_warm >> 20, peak1 >> 20, peak2 >> 20, rss_end >> 20);
    if (corrupt) {
        fprintf(stderr, "FAIL: a block's pattern changed\n");
        return 1;
    }
    if (peak1 && peak2 > peak1 + ((size_t)SLACK_MIB << 20)) {
        fprintf(stderr, "FAIL: RSS grew with the number of threads: peak %zu MiB, then %zu MiB\n", peak1 >> 20,
                peak2 >> 20);
        return 1;
    }
    if (peak2 > (size_t)LIMIT_MIB << 20) {
        fprintf(stderr, "FAIL: RSS peaked at %zu MiB (limit %d MiB)\n", peak2 >> 20, LIMIT_MIB);
        return 1;
    }
    return 0;
}
