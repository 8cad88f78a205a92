/* Cross-thread frees: producer threads allocate mixed-size blocks (8 B to
 * 1 MiB), fill them with a pattern keyed by the block's own header word, and
 * pass them through a bounded queue to consumer threads, which verify the
 * pattern and free them. Then thread churn: thousands of short-lived threads
 * each allocate and free, some handing blocks to the main thread, which frees
 * them. At the end the resident set must be bounded. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PRODUCERS 3
#define CONSUMERS 3
#define PER_PRODUCER 60000
#define QCAP 4096

struct block {
    uint64_t size;  /* bytes in the whole block */
    uint64_t seed;  /* fill byte of the rest */
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    struct block *items[QCAP];
    size_t head, count;
    int producers_left;
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, 0, PRODUCERS};

static volatile int failed;

static void fail(const char *what)
{
    if (!__sync_lock_test_and_set(&failed, 1))
        fprintf(stderr, "FAIL: %s\n", what);
}

static void push(struct block *b)
{
    pthread_mutex_lock(&q.lock);
    while (q.count == QCAP)
        pthread_cond_wait(&q.not_full, &q.lock);
    q.items[(q.head + q.count) % QCAP] = b;
    q.count++;
    pthread_cond_signal(&q.not_empty);
    pthread_mutex_unlock(&q.lock);
}

/* NULL when every producer is done and the queue is empty. */
static struct block *pop(void)
{
    pthread_mutex_lock(&q.lock);
    while (q.count == 0 && q.producers_left > 0)
        pthread_cond_wait(&q.not_empty, &q.lock);
    struct block *b = NULL;
    if (q.count) {
        b = q.items[q.head];
        q.head = (q.head + 1) % QCAP;
        q.count--;
        pthread_cond_signal(&q.not_full);
    }
    pthread_mutex_unlock(&q.lock);
    return b;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Mostly small, some medium, a few up to 1 MiB. */
static size_t pick_size(uint64_t *s)
{
    uint64_t r = rnd(s);
    unsigned kind = r % 1000;
    if (kind < 800)
        return 16 + (r >> 10) % 496;
    if (kind < 990)
        return 512 + (r >> 10) % 65536;
    return 65536 + (r >> 10) % ((1 << 20) - 65536 + 1);
}

static void fill(struct block *b, size_t size, uint64_t seed)
{
    b->size = size;
    b->seed = seed;
    memset(b + 1, (int)(seed & 0xff), size - sizeof *b);
}

static int intact(const struct block *b)
{
    const unsigned char *p = (const unsigned char *)(b + 1);
    unsigned char v = (unsigned char)(b->seed & 0xff);
    size_t n = b->size - sizeof *b;
    /* Check both ends and a stride: a full scan of the 1 MiB blocks is slow. */
    for (size_t i = 0; i < n; i += (n > 4096 ? 61 : 1))
        if (p[i] != v)
            return 0;
    return n == 0 || p[n - 1] == v;
}

static void *producer(void *arg)
{
    uint64_t s = 0x9e3779b97f4a7c15ull * ((uintptr_t)arg + 1);
    for (int i = 0; i < PER_PRODUCER && !failed; i++) {
        size_t n = pick_size(&s);
        /* A few aligned blocks: they are freed and resized remotely too. */
        struct block *b = i % 20 == 7 ? aligned_alloc((size_t)64 << (i % 7), n) : malloc(n);
        if (!b) {
            fail("producer malloc returned NULL");
            break;
        }
        fill(b, n, rnd(&s));
        push(b);
        /* Some local churn so producers free on their own heap too. */
        if (i % 8 == 0) {
            void *t = malloc(n % 300 + 1);
            free(t);
        }
    }
    pthread_mutex_lock(&q.lock);
    q.producers_left--;
    pthread_cond_broadcast(&q.not_empty);
    pthread_mutex_unlock(&q.lock);
    return NULL;
}

static long consumed;

static void *consumer(void *arg)
{
    (void)arg;
    long n = 0;
    struct block *b;
    while ((b = pop()) != NULL) {
        if (!intact(b))
            fail("consumer found a block whose fill pattern changed (cross-thread corruption)");
        /* Every fourth block is resized by this thread, not its owner, first. */
        if (n % 4 == 0) {
            size_t m = n % 8 == 0 ? b->size / 2 + sizeof *b : b->size * 2;
            size_t keep = (m < b->size ? m : b->size) - sizeof *b;
            unsigned char v = (unsigned char)(b->seed & 0xff);
            struct block *r = realloc(b, m);
            if (!r) {
                fail("remote realloc returned NULL");
                free(b);
                n++;
                continue;
            }
            const unsigned char *p = (const unsigned char *)(r + 1);
            if (keep && (p[0] != v || p[keep / 2] != v || p[keep - 1] != v))
                fail("remote realloc lost the block's contents");
            b = r;
        }
        free(b);
        n++;
    }
    __sync_fetch_and_add(&consumed, n);
    return NULL;
}

/* --- thread churn --------------------------------------------------------- */

#define CHURN_THREADS 3000
#define CHURN_PARALLEL 8

static pthread_mutex_t handoff_lock = PTHREAD_MUTEX_INITIALIZER;
static void *handoff[CHURN_THREADS];
static int handoff_count;

static void *short_lived(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    uint64_t s = 0x12345678ull + id * 0x9e3779b97f4a7c15ull;
    void *mine[64];
    for (int i = 0; i < 64; i++) {
        size_t n = (i == 63 && id % 50 == 0) ? (600 << 10) : 8 + rnd(&s) % 4000;
        mine[i] = i % 5 ? malloc(n) : calloc(1, n);
        if (!mine[i]) {
            fail("malloc in a short-lived thread returned NULL");
            return NULL;
        }
        memset(mine[i], (int)id, n < 64 ? n : 64);
    }
    /* Every third thread leaves a few blocks for the main thread to free
     * after this thread has exited (its heap must be reclaimable). */
    int keep = id % 3 == 0 ? 4 : 0;
    for (int i = keep; i < 64; i++)
        free(mine[i]);
    if (keep) {
        pthread_mutex_lock(&handoff_lock);
        for (int i = 0; i < keep && handoff_count < CHURN_THREADS; i++)
            handoff[handoff_count++] = mine[i];
        pthread_mutex_unlock(&handoff_lock);
    }
    return NULL;
}

/* Resident and virtual size in KiB, from /proc/self/statm; -1 if unreadable. */
static void mem_kib(long *resident_kib, long *virtual_kib)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = -1, resident = -1;
    if (!f || fscanf(f, "%ld %ld", &size, &resident) != 2)
        size = resident = -1;
    if (f)
        fclose(f);
    long kib = sysconf(_SC_PAGESIZE) / 1024;
    *resident_kib = resident < 0 ? -1 : resident * kib;
    *virtual_kib = size < 0 ? -1 : size * kib;
}

int main(void)
{
    pthread_t p[PRODUCERS], c[CONSUMERS];
    for (uintptr_t i = 0; i < CONSUMERS; i++)
        pthread_create(&c[i], NULL, consumer, (void *)i);
    for (uintptr_t i = 0; i < PRODUCERS; i++)
        pthread_create(&p[i], NULL, producer, (void *)i);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(p[i], NULL);
    for (int i = 0; i < CONSUMERS; i++)
        pthread_join(c[i], NULL);
    if (!failed && consumed != (long)PRODUCERS * PER_PRODUCER) {
        fprintf(stderr, "FAIL: consumed %ld blocks, produced %ld\n", consumed, (long)PRODUCERS * PER_PRODUCER);
        return 1;
    }
    long rss_after_queue, vm_after_queue;
    mem_kib(&rss_after_queue, &vm_after_queue);

    for (int started = 0; started < CHURN_THREADS && !failed; started += CHURN_PARALLEL) {
        pthread_t t[CHURN_PARALLEL];
        for (int k = 0; k < CHURN_PARALLEL; k++)
            if (pthread_create(&t[k], NULL, short_lived, (void *)(uintptr_t)(started + k))) {
                fail("pthread_create failed");
                return 1;
            }
        for (int k = 0; k < CHURN_PARALLEL; k++)
            pthread_join(t[k], NULL);
        /* Free what exited threads handed over, now and then. */
        if (started % 256 == 0) {
            pthread_mutex_lock(&handoff_lock);
            for (int i = 0; i < handoff_count; i++)
                free(handoff[i]);
            handoff_count = 0;
            pthread_mutex_unlock(&handoff_lock);
        }
    }
    for (int i = 0; i < handoff_count; i++)
        free(handoff[i]);
    handoff_count = 0;
    /* After everything is freed, allocation still works on the main thread. */
    for (int i = 0; i < 100000; i++) {
        void *x = malloc(8 + i % 1000);
        if (!x) {
            fail("malloc after churn returned NULL");
            break;
        }
        free(x);
    }
    long rss, vm;
    mem_kib(&rss, &vm);
    if (failed)
        return 1;
    /* 3000 threads x ~130 KiB of live blocks each would be ~390 MiB if
     * nothing were reclaimed; a working allocator stays far below this. */
    if (rss < 0 || rss > 200 * 1024) {
        fprintf(stderr, "FAIL: RSS after thread churn is %ld KiB (bound 200 MiB)\n", rss);
        return 1;
    }
    /* Segments of exited threads must be reused, not just purged: leaking
     * one mapping per thread would show here even with RSS low. */
    if (vm < 0 || vm > 2 * 1024 * 1024) {
        fprintf(stderr, "FAIL: virtual size after thread churn is %ld KiB (bound 2 GiB)\n", vm);
        return 1;
    }
    printf("cross_thread: %ld blocks across threads, %d short-lived threads; RSS %ld KiB after queue, "
           "%ld KiB after churn (virtual %ld KiB, %ld KiB)\n",
           consumed, CHURN_THREADS, rss_after_queue, rss, vm_after_queue, vm);
    return 0;
}
