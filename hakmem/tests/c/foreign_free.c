/* Frees pointers hakmem never handed out: a static, a stack address, and a
 * page mapped directly with mmap. A release build reports the first one on
 * stderr ("not allocated by hakmem") and ignores them all; the program must
 * continue, and malloc must keep working afterwards. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static char static_buf[64];

/* Stop the compiler from seeing that these are not heap pointers. */
static void *launder(void *p)
{
    __asm__ volatile("" : "+r"(p));
    return p;
}

int main(void)
{
    char stack_buf[64];
    void *mapped = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped == MAP_FAILED) {
        perror("mmap");
        return 2;
    }
    memset(mapped, 0x5a, 1 << 16);
    strcpy(static_buf, "static");
    strcpy(stack_buf, "stack");

    free(launder(static_buf));
    free(launder(stack_buf));
    free(launder((char *)mapped + 4096));
    free(launder(mapped));

    /* Nothing was touched: the contents are intact. */
    if (strcmp(static_buf, "static") || strcmp(stack_buf, "stack") || ((unsigned char *)mapped)[4096] != 0x5a) {
        fprintf(stderr, "FAIL: a foreign free changed the memory it was given\n");
        return 1;
    }
    /* realloc and malloc_usable_size of foreign pointers do not crash either. */
    void *r = realloc(launder(static_buf), 128);
    if (r) {
        fprintf(stderr, "FAIL: realloc of a foreign pointer returned %p, want NULL\n", r);
        return 1;
    }
    if (malloc_usable_size(launder(stack_buf)) != 0) {
        fprintf(stderr, "FAIL: malloc_usable_size of a stack pointer is non-zero\n");
        return 1;
    }
    /* The allocator still works. */
    for (int i = 0; i < 10000; i++) {
        char *p = malloc(1 + i % 5000);
        if (!p) {
            fprintf(stderr, "FAIL: malloc failed after foreign frees\n");
            return 1;
        }
        p[0] = 1;
        free(p);
    }
    printf("foreign_free: continued after foreign frees\n");
    return 0;
}
