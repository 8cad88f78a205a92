/* API conformance of libhakmem.so's malloc family, run under LD_PRELOAD.
 *
 * Every check prints "FAIL: <what>" on failure; the program exits 1 if any
 * check failed, after running all of them, so one run shows every problem. */
#define _GNU_SOURCE
/* The failed-realloc checks read the old block after realloc on purpose. */
#pragma GCC diagnostic ignored "-Wuse-after-free"
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;
static int checks;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        checks++;                                                              \
        if (!(cond)) {                                                         \
            failures++;                                                        \
            fprintf(stderr, "FAIL (%s:%d): ", __FILE__, __LINE__);            \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)

/* Keep the compiler from folding malloc(SIZE_MAX) and friends into NULL. */
static volatile size_t opaque_zero;
static size_t hide(size_t x) { return x + opaque_zero; }

static int all_bytes(const unsigned char *p, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            return 0;
    return 1;
}

static void fill_pattern(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(i * 31u + seed);
}

static int has_pattern(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(i * 31u + seed))
            return 0;
    return 1;
}

/* Sizes across every regime: tiny classes, fine classes, page-sized, the
 * 512 KiB class boundary, large blocks. */
static const size_t sizes[] = {
    1, 2, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 48, 63, 64, 65, 72, 80, 96,
    100, 127, 128, 129, 200, 255, 256, 257, 500, 512, 513, 1000, 1024, 1025,
    2047, 2048, 2049, 4095, 4096, 4097, 8191, 8192, 10000, 16384, 32767, 65536,
    100000, 131072, 262143, 262144, 400000, 524287, 524288, 524289, 600000,
    1048576, 1048577, 2097152, 3000000, 4194304, 8388608, 16777216 + 3,
};
#define NSIZES (sizeof sizes / sizeof sizes[0])

static void test_malloc_free(void)
{
    free(NULL); /* must be a no-op */
    for (size_t i = 0; i < NSIZES; i++) {
        size_t n = sizes[i];
        unsigned char *p = malloc(n);
        CHECK(p != NULL, "malloc(%zu) returned NULL", n);
        if (!p)
            continue;
        if (n > 8)
            CHECK((uintptr_t)p % 16 == 0, "malloc(%zu) = %p not 16-byte aligned", n, (void *)p);
        else
            CHECK((uintptr_t)p % 8 == 0, "malloc(%zu) = %p not 8-byte aligned", n, (void *)p);
        size_t u = malloc_usable_size(p);
        CHECK(u >= n, "malloc_usable_size(malloc(%zu)) = %zu < request", n, u);
        /* The whole usable size is writable. */
        fill_pattern(p, u, (unsigned)n);
        CHECK(has_pattern(p, u, (unsigned)n), "malloc(%zu) contents changed", n);
        free(p);
    }
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) != 0");

    /* 16-byte alignment of every block > 8 bytes, many live at once. */
    enum { LIVE = 4000 };
    static void *live[LIVE];
    int misaligned = 0;
    for (int i = 0; i < LIVE; i++) {
        size_t n = 9 + (size_t)(i * 7919) % 3000;
        live[i] = malloc(n);
        if (!live[i] || (uintptr_t)live[i] % 16 != 0)
            misaligned++;
    }
    CHECK(misaligned == 0, "%d of %d mallocs of 9..3008 bytes NULL or not 16-aligned", misaligned, LIVE);
    for (int i = 0; i < LIVE; i++)
        free(live[i]);
}

static void test_malloc_zero(void)
{
    enum { N = 256 };
    void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = malloc(0);
        CHECK(p[i] != NULL, "malloc(0) #%d returned NULL", i);
    }
    int dup = 0;
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++)
            if (p[i] && p[i] == p[j])
                dup++;
    CHECK(dup == 0, "malloc(0) returned the same pointer %d times while live", dup);
    for (int i = 0; i < N; i++)
        free(p[i]);
}

static void test_enomem(void)
{
    void *p;

    errno = 0;
    p = malloc(hide(SIZE_MAX));
    CHECK(p == NULL && errno == ENOMEM, "malloc(SIZE_MAX) = %p errno %d, want NULL/ENOMEM", p, errno);
    errno = 0;
    p = malloc(hide(SIZE_MAX / 2));
    CHECK(p == NULL && errno == ENOMEM, "malloc(SIZE_MAX/2) = %p errno %d, want NULL/ENOMEM", p, errno);
    errno = 0;
    p = malloc(hide((size_t)PTRDIFF_MAX + 1));
    CHECK(p == NULL && errno == ENOMEM, "malloc(PTRDIFF_MAX+1) = %p errno %d, want NULL/ENOMEM", p, errno);

    errno = 0;
    p = calloc(hide(SIZE_MAX / 2), 4);
    CHECK(p == NULL && errno == ENOMEM, "calloc(SIZE_MAX/2, 4) = %p errno %d, want NULL/ENOMEM", p, errno);
    errno = 0;
    p = calloc(4, hide(SIZE_MAX / 2));
    CHECK(p == NULL && errno == ENOMEM, "calloc(4, SIZE_MAX/2) = %p errno %d, want NULL/ENOMEM", p, errno);
    errno = 0;
    p = calloc(hide((size_t)1 << 33), (size_t)1 << 33);
    CHECK(p == NULL && errno == ENOMEM, "calloc(2^33, 2^33) = %p errno %d, want NULL/ENOMEM", p, errno);
    errno = 0;
    p = calloc(1, hide(SIZE_MAX - 100));
    CHECK(p == NULL && errno == ENOMEM, "calloc(1, SIZE_MAX-100) = %p errno %d, want NULL/ENOMEM", p, errno);

    /* reallocarray overflow: NULL, ENOMEM, the old block untouched. */
    unsigned char *old = malloc(100);
    fill_pattern(old, 100, 5);
    errno = 0;
    p = reallocarray(old, hide(SIZE_MAX / 2), 3);
    CHECK(p == NULL && errno == ENOMEM, "reallocarray(p, SIZE_MAX/2, 3) = %p errno %d, want NULL/ENOMEM", p, errno);
    CHECK(has_pattern(old, 100, 5), "reallocarray overflow changed the old block");
    errno = 0;
    p = reallocarray(NULL, hide(SIZE_MAX / 2), 3);
    CHECK(p == NULL && errno == ENOMEM, "reallocarray(NULL, SIZE_MAX/2, 3) = %p errno %d, want NULL/ENOMEM", p, errno);
    /* reallocarray that fits behaves as realloc. */
    unsigned char *q = reallocarray(old, 50, 8);
    CHECK(q != NULL && has_pattern(q, 100, 5), "reallocarray(p, 50, 8) lost contents");
    CHECK(q == NULL || malloc_usable_size(q) >= 400, "reallocarray(p, 50, 8) usable %zu < 400", q ? malloc_usable_size(q) : 0);
    free(q ? q : old);

    errno = 0;
    p = aligned_alloc(64, hide(SIZE_MAX - 1000));
    CHECK(p == NULL && errno == ENOMEM, "aligned_alloc(64, SIZE_MAX-1000) = %p errno %d, want NULL/ENOMEM", p, errno);
    void *out = (void *)1;
    int rc = posix_memalign(&out, 4096, hide(SIZE_MAX - 1000));
    CHECK(rc == ENOMEM, "posix_memalign(4096, SIZE_MAX-1000) returned %d, want ENOMEM", rc);
    CHECK(out == (void *)1, "failed posix_memalign changed *memptr");
    errno = 0;
    p = memalign(64, hide(SIZE_MAX / 2));
    CHECK(p == NULL && errno == ENOMEM, "memalign(64, SIZE_MAX/2) = %p errno %d, want NULL/ENOMEM", p, errno);
    errno = 0;
    p = valloc(hide(SIZE_MAX - 100));
    CHECK(p == NULL && errno == ENOMEM, "valloc(SIZE_MAX-100) = %p errno %d, want NULL/ENOMEM", p, errno);
    errno = 0;
    p = pvalloc(hide(SIZE_MAX - 100));
    CHECK(p == NULL && errno == ENOMEM, "pvalloc(SIZE_MAX-100) = %p errno %d, want NULL/ENOMEM", p, errno);
}

static void test_einval(void)
{
    static const size_t bad[] = {0, 3, 5, 12, 24, 48, 100, 4095};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        void *out = (void *)1;
        int rc = posix_memalign(&out, hide(bad[i]), 64);
        CHECK(rc == EINVAL, "posix_memalign(align %zu) returned %d, want EINVAL", bad[i], rc);
        CHECK(out == (void *)1, "posix_memalign(align %zu) failed but changed *memptr", bad[i]);
    }
    /* Powers of two smaller than sizeof(void *) are invalid for posix_memalign. */
    void *out = (void *)1;
    int rc = posix_memalign(&out, hide(4), 64);
    CHECK(rc == EINVAL, "posix_memalign(align 4) returned %d, want EINVAL", rc);

    static const size_t bad_aa[] = {0, 3, 24, 100};
    for (size_t i = 0; i < sizeof bad_aa / sizeof bad_aa[0]; i++) {
        errno = 0;
        void *p = aligned_alloc(hide(bad_aa[i]), 64);
        CHECK(p == NULL && errno == EINVAL, "aligned_alloc(%zu, 64) = %p errno %d, want NULL/EINVAL", bad_aa[i], p, errno);
        free(p);
    }
    /* memalign rounds a non-power-of-two alignment up (glibc). */
    void *p = memalign(hide(24), 100);
    CHECK(p != NULL && (uintptr_t)p % 32 == 0, "memalign(24, 100) = %p, want 32-aligned", p);
    free(p);
}

static void test_alignment(void)
{
    for (size_t align = 8; align <= ((size_t)8 << 20); align <<= 1) {
        static const size_t req[] = {1, 8, 16, 100, 4096, 100000, 1 << 20};
        for (size_t k = 0; k < sizeof req / sizeof req[0]; k++) {
            size_t n = req[k];
            void *p = NULL;
            int rc = posix_memalign(&p, align, n);
            CHECK(rc == 0 && p != NULL, "posix_memalign(%zu, %zu) failed with %d", align, n, rc);
            if (p) {
                CHECK((uintptr_t)p % align == 0, "posix_memalign(%zu, %zu) = %p misaligned", align, n, p);
                CHECK(malloc_usable_size(p) >= n, "posix_memalign(%zu, %zu) usable %zu", align, n, malloc_usable_size(p));
                memset(p, 0xab, n);
                free(p);
            }

            unsigned char *a = aligned_alloc(align, n);
            CHECK(a != NULL && (uintptr_t)a % align == 0, "aligned_alloc(%zu, %zu) = %p", align, n, (void *)a);
            if (a) {
                CHECK(malloc_usable_size(a) >= n, "aligned_alloc(%zu, %zu) usable %zu", align, n, malloc_usable_size(a));
                memset(a, 0xcd, n);
            }
            /* realloc of an aligned block keeps its contents. */
            if (a) {
                unsigned char *b = realloc(a, n * 2 + 1);
                CHECK(b != NULL && all_bytes(b, n, 0xcd), "realloc(aligned_alloc(%zu, %zu)) lost contents", align, n);
                free(b ? b : a);
            }

            void *m = memalign(align, n);
            CHECK(m != NULL && (uintptr_t)m % align == 0, "memalign(%zu, %zu) = %p", align, n, m);
            free(m);
        }
    }
    /* Many live aligned blocks at once, interleaved with malloc. */
    enum { N = 300 };
    void *p[N], *q[N];
    int bad = 0;
    for (int i = 0; i < N; i++) {
        size_t align = (size_t)32 << (i % 12); /* 32 B .. 64 KiB */
        p[i] = aligned_alloc(align, 24 + (size_t)i * 13);
        q[i] = malloc(24 + (size_t)i);
        if (!p[i] || (uintptr_t)p[i] % align)
            bad++;
    }
    CHECK(bad == 0, "%d of %d interleaved aligned_alloc results NULL or misaligned", bad, N);
    for (int i = 0; i < N; i++) {
        free(q[i]);
        free(p[i]);
    }

    long page = sysconf(_SC_PAGESIZE);
    void *v = valloc(100);
    CHECK(v != NULL && (uintptr_t)v % page == 0, "valloc(100) = %p not page-aligned", v);
    free(v);
    void *pv = pvalloc(100);
    CHECK(pv != NULL && (uintptr_t)pv % page == 0, "pvalloc(100) = %p not page-aligned", pv);
    CHECK(pv == NULL || malloc_usable_size(pv) >= (size_t)page, "pvalloc(100) usable %zu < page", pv ? malloc_usable_size(pv) : 0);
    free(pv);
    pv = pvalloc(0);
    CHECK(pv != NULL && (uintptr_t)pv % page == 0, "pvalloc(0) = %p", pv);
    free(pv);
    v = valloc(3 * page + 1);
    CHECK(v != NULL && (uintptr_t)v % page == 0, "valloc(3 pages + 1) = %p", v);
    free(v);
}

static void test_calloc(void)
{
    /* calloc zeroes memory that was reused: dirty a block, free, calloc again. */
    static const size_t cs[] = {8, 16, 24, 100, 1000, 4096, 10000, 65536, 200000,
                                524288, 600000, 1 << 20, 3 << 20, 9 << 20};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        size_t n = cs[i];
        int dirty = 0;
        int rounds = n > (1 << 20) ? 8 : 64;
        for (int r = 0; r < rounds; r++) {
            unsigned char *p = malloc(n);
            if (!p)
                break;
            memset(p, 0xff, malloc_usable_size(p));
            free(p);
            unsigned char *z = calloc(1, n);
            if (!z || !all_bytes(z, n, 0))
                dirty++;
            /* dirty it for the next round too */
            if (z)
                memset(z, 0xff, n);
            free(z);
        }
        CHECK(dirty == 0, "calloc(1, %zu) returned non-zero (or NULL) memory in %d of %d rounds after reuse", n, dirty, rounds);
        /* as n elements of 1 byte and 1/4 as many 4-byte elements */
        unsigned char *a = malloc(n);
        memset(a, 0xee, n);
        free(a);
        unsigned char *z = calloc(n / 4 ? n / 4 : 1, 4);
        CHECK(z && all_bytes(z, (n / 4 ? n / 4 : 1) * 4, 0), "calloc(%zu, 4) not zeroed", n / 4);
        free(z);
    }
    /* Many live dirty blocks freed, then calloc'd back. */
    enum { N = 1000 };
    static unsigned char *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = malloc(48);
        memset(p[i], 0xff, 48);
    }
    for (int i = 0; i < N; i++)
        free(p[i]);
    int dirty = 0;
    for (int i = 0; i < N; i++) {
        p[i] = calloc(3, 16);
        if (!p[i] || !all_bytes(p[i], 48, 0))
            dirty++;
    }
    CHECK(dirty == 0, "%d of %d calloc(3,16) after free of dirty 48-byte blocks not zeroed", dirty, N);
    for (int i = 0; i < N; i++)
        free(p[i]);
    void *z0 = calloc(0, 0);
    CHECK(z0 != NULL, "calloc(0, 0) returned NULL");
    free(z0);
}

static void test_realloc(void)
{
    /* realloc(NULL, n) is malloc(n). */
    unsigned char *p = realloc(NULL, 100);
    CHECK(p != NULL && malloc_usable_size(p) >= 100, "realloc(NULL, 100) = %p", (void *)p);
    free(p);

    /* Grow and shrink through every regime, across the 512 KiB class boundary. */
    static const size_t steps[] = {1, 10, 16, 17, 100, 1000, 4096, 60000, 500000, 524288,
                                   524289, 600000, 2 << 20, 9 << 20, 3 << 20, 600000,
                                   524289, 524288, 500000, 4096, 100, 17, 1, 5000, 1 << 20, 64};
    size_t cur = steps[0];
    p = malloc(cur);
    fill_pattern(p, cur, 77);
    for (size_t i = 1; i < sizeof steps / sizeof steps[0]; i++) {
        size_t n = steps[i];
        unsigned char *q = realloc(p, n);
        CHECK(q != NULL, "realloc(%zu -> %zu) returned NULL", cur, n);
        if (!q)
            break;
        size_t keep = cur < n ? cur : n;
        CHECK(has_pattern(q, keep, 77), "realloc(%zu -> %zu) did not keep the first %zu bytes", cur, n, keep);
        CHECK(malloc_usable_size(q) >= n, "realloc(..., %zu) usable %zu", n, malloc_usable_size(q));
        if ((uintptr_t)q % 16 != 0 && n > 8)
            CHECK(0, "realloc(..., %zu) = %p not 16-aligned", n, (void *)q);
        fill_pattern(q, n, 77); /* extend the pattern to the new size */
        p = q;
        cur = n;
    }
    free(p);

    /* Failed realloc (huge size) returns NULL, sets ENOMEM, keeps the old block. */
    static const size_t olds[] = {40, 5000, 700000};
    for (size_t i = 0; i < sizeof olds / sizeof olds[0]; i++) {
        size_t n = olds[i];
        unsigned char *b = malloc(n);
        fill_pattern(b, n, 9);
        errno = 0;
        unsigned char *r = realloc(b, hide(SIZE_MAX - 4096));
        CHECK(r == NULL && errno == ENOMEM, "realloc(%zu-byte block, SIZE_MAX-4096) = %p errno %d, want NULL/ENOMEM", n, (void *)r, errno);
        CHECK(has_pattern(b, n, 9), "failed realloc changed the old %zu-byte block", n);
        errno = 0;
        r = realloc(b, hide((size_t)1 << 62));
        CHECK(r == NULL && errno == ENOMEM, "realloc(%zu-byte block, 2^62) = %p errno %d, want NULL/ENOMEM", n, (void *)r, errno);
        CHECK(has_pattern(b, n, 9), "failed realloc(2^62) changed the old %zu-byte block", n);
        /* still usable: grow it for real */
        unsigned char *g = realloc(b, n * 3);
        CHECK(g != NULL && has_pattern(g, n, 9), "realloc after failed realloc lost contents (%zu bytes)", n);
        free(g ? g : b);
    }

    /* Random walk of realloc sizes, many blocks, with content checks. */
    enum { N = 64 };
    unsigned char *blk[N] = {0};
    size_t len[N] = {0};
    unsigned seed = 12345;
    int lost = 0;
    for (int it = 0; it < 20000; it++) {
        seed = seed * 1103515245u + 12345u;
        int k = (seed >> 8) % N;
        size_t n;
        unsigned r = (seed >> 16) % 100;
        if (r < 70)
            n = 1 + (seed >> 4) % 2048;
        else if (r < 95)
            n = 1 + (seed >> 4) % 200000;
        else
            n = 1 + (seed >> 4) % (3 << 20);
        if (blk[k] && !all_bytes(blk[k], len[k], (unsigned char)k))
            lost++;
        unsigned char *q = realloc(blk[k], n);
        if (!q) {
            lost++;
            continue;
        }
        size_t keep = len[k] < n ? len[k] : n;
        if (!all_bytes(q, keep, (unsigned char)k))
            lost++;
        memset(q, k, n);
        blk[k] = q;
        len[k] = n;
    }
    CHECK(lost == 0, "random realloc walk: %d blocks lost contents", lost);
    for (int k = 0; k < N; k++)
        free(blk[k]);

    /* realloc(p, 0) frees (glibc returns NULL); either way no crash. */
    p = malloc(10);
    void *z = realloc(p, 0);
    free(z);
}

static void test_usable_size(void)
{
    int bad = 0;
    for (size_t n = 1; n <= 70000; n += (n < 2048 ? 1 : n / 16)) {
        unsigned char *p = malloc(n);
        size_t u = p ? malloc_usable_size(p) : 0;
        if (u < n) {
            if (bad++ < 5)
                fprintf(stderr, "  usable_size(malloc(%zu)) = %zu\n", n, u);
        } else {
            p[u - 1] = 1; /* writable to the end */
        }
        free(p);
    }
    CHECK(bad == 0, "%d sizes with malloc_usable_size < request", bad);
    bad = 0;
    for (size_t n = 1; n <= 4096; n = n * 3 + 1) {
        unsigned char *p = calloc(n, 3);
        if (!p || malloc_usable_size(p) < n * 3)
            bad++;
        free(p);
    }
    CHECK(bad == 0, "%d calloc sizes with malloc_usable_size < request", bad);
}

int main(void)
{
    test_malloc_free();
    test_malloc_zero();
    test_enomem();
    test_einval();
    test_alignment();
    test_calloc();
    test_realloc();
    test_usable_size();
    if (failures) {
        fprintf(stderr, "api_conformance: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("api_conformance: %d checks passed\n", checks);
    return 0;
}
