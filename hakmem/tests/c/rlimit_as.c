/* Out of address space (RLIMIT_AS), under LD_PRELOAD: malloc, calloc,
 * realloc, posix_memalign and aligned_alloc fail with NULL / ENOMEM instead
 * of aborting; a failed realloc leaves the old block as it was; blocks already
 * handed out stay intact; after freeing half of them allocation works again,
 * and after the limit is raised, big blocks too. Bookkeeping lives in static
 * arrays: nothing but the calls under test allocates once the limit is set.
 * Prints one summary line; exits non-zero on the first failed check. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define MIB (1024ul * 1024)
#define MAX_BLOCKS (1 << 18)

static unsigned char *blocks[MAX_BLOCKS];
static size_t sizes[MAX_BLOCKS];
static int nblocks;

#define CHECK(c, ...)                                                   \
    do {                                                                \
        if (!(c)) {                                                     \
            fprintf(stderr, "rlimit_as: FAIL line %d: ", __LINE__);     \
            fprintf(stderr, __VA_ARGS__);                               \
            fputc('\n', stderr);                                        \
            exit(1);                                                    \
        }                                                               \
    } while (0)

static void mark(unsigned char *p, size_t n, int i)
{
    p[0] = (unsigned char)(i ^ 0x5a);
    p[n / 2] = (unsigned char)(i >> 3);
    p[n - 1] = (unsigned char)(i ^ 0xa5);
}

static int marked(const unsigned char *p, size_t n, int i)
{
    return p[0] == (unsigned char)(i ^ 0x5a) && p[n / 2] == (unsigned char)(i >> 3) &&
           p[n - 1] == (unsigned char)(i ^ 0xa5);
}

static size_t vm_size(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f) {
        if (fscanf(f, "%lu", &pages) != 1)
            pages = 0;
        fclose(f);
    }
    return pages * 4096;
}

int main(void)
{
    static const size_t kinds[] = {100, 50000, 3 * MIB, 300000, 8192, 700 * 1024};
    const int nkinds = sizeof kinds / sizeof kinds[0];
    size_t limit = vm_size() + 384 * MIB;
    printf("rlimit_as: address space capped at %zu MiB\n", limit / MIB);
    fflush(stdout);
    struct rlimit rl = {limit, RLIM_INFINITY};
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit: %s", strerror(errno));

    /* Allocate the sizes in turn until each has failed twice. */
    int failures = 0;
    size_t total = 0;
    for (int round = 0; failures < 2 * nkinds; round++) {
        CHECK(nblocks + nkinds < MAX_BLOCKS, "no failure after %d rounds", round);
        for (int k = 0; k < nkinds; k++) {
            errno = 0;
            unsigned char *p = malloc(kinds[k]);
            if (!p) {
                CHECK(errno == ENOMEM, "malloc(%zu) = NULL with errno %d", kinds[k], errno);
                failures++;
                continue;
            }
            mark(p, kinds[k], nblocks);
            blocks[nblocks] = p;
            sizes[nblocks++] = kinds[k];
            total += kinds[k];
        }
    }
    CHECK(total > 192 * MIB, "failed after only %zu MiB", total / MIB);

    /* Every other entry point fails the same way. */
    errno = 0;
    void *q = calloc(64, MIB);
    CHECK(!q && errno == ENOMEM, "calloc(64, 1 MiB): %p errno %d", q, errno);
    errno = 0;
    q = aligned_alloc(64, 64 * MIB);
    CHECK(!q && errno == ENOMEM, "aligned_alloc(64, 64 MiB): %p errno %d", q, errno);
    void *out = (void *)&out;
    int rc = posix_memalign(&out, 4 * MIB, 64 * MIB);
    CHECK(rc == ENOMEM && out == (void *)&out, "posix_memalign(4 MiB, 64 MiB) = %d", rc);
    for (int i = 0; i < 3; i++) {
        errno = 0;
        q = realloc(blocks[i], 256 * MIB);
        CHECK(!q && errno == ENOMEM, "realloc(%zu -> 256 MiB): %p errno %d", sizes[i], q, errno);
    }
    for (int i = 0; i < nblocks; i++)
        CHECK(marked(blocks[i], sizes[i], i), "block %d (%zu B) changed", i, sizes[i]);

    /* Free half: allocation works again, in every size. */
    for (int i = 0; i < nblocks; i += 2) {
        free(blocks[i]);
        blocks[i] = NULL;
    }
    for (int k = 0; k < nkinds; k++) {
        unsigned char *p = malloc(kinds[k]);
        CHECK(p, "malloc(%zu) after freeing half: errno %d", kinds[k], errno);
        mark(p, kinds[k], 1);
        free(p);
    }
    unsigned char *r = realloc(blocks[1], 6 * MIB);
    CHECK(r && marked(r, sizes[1], 1), "realloc(%zu -> 6 MiB) after freeing half", sizes[1]);
    blocks[1] = r;
    sizes[1] = 6 * MIB;
    mark(r, sizes[1], 1);

    /* Raise the limit: a block bigger than the old headroom. */
    rl.rlim_cur = RLIM_INFINITY;
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0, "setrlimit: %s", strerror(errno));
    unsigned char *big = malloc(512 * MIB);
    CHECK(big, "malloc(512 MiB) after the limit was raised");
    big[0] = big[512 * MIB - 1] = 1;
    free(big);

    for (int i = 1; i < nblocks; i += 2) {
        CHECK(marked(blocks[i], sizes[i], i), "block %d (%zu B) changed", i, sizes[i]);
        free(blocks[i]);
    }
    printf("rlimit_as: %d blocks (%zu MiB) before NULL + ENOMEM; calloc, aligned_alloc, "
           "posix_memalign, realloc failed cleanly; recovered after free and after raising the limit\n",
           nblocks, total / MIB);
    return 0;
}
