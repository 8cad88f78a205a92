/* Hardened-mode checks (run under a libhakmem.so built with --features hardened):
 * each mode commits one memory error; the allocator must abort with a message
 * naming it. Mode "normal" must run clean. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "normal";
    if (!strcmp(mode, "double-free")) {
        char *volatile p = malloc(32);
        free(p);
        free(p);
    } else if (!strcmp(mode, "remote-style-double-free")) {
        char *volatile p = malloc(200), *volatile q = malloc(200);
        free(p);
        free(q);
        free(p);
    } else if (!strcmp(mode, "overflow")) {
        /* Overwrite the next free block's link, then allocate through it. */
        char *volatile a = malloc(32), *volatile b = malloc(32);
        free(b);
        volatile char *va = a;
        for (int i = 0; i < 40; i++) va[i] = 0x41;
        void *c = malloc(32), *d = malloc(32);
        printf("%p %p\n", c, d);
    } else if (!strcmp(mode, "large-double-free")) {
        char *volatile p = malloc(2 << 20);
        free(p);
        free(p);
    } else if (!strcmp(mode, "guard")) {
        /* Run off the end of a large block: the guard page must stop it. */
        size_t n = 3 << 20;
        volatile char *p = malloc(n);
        size_t usable = 0;
        extern size_t malloc_usable_size(void *);
        usable = malloc_usable_size((void *)p);
        for (size_t i = 0; i < usable + 8192; i += 512) p[i] = 1;
    } else {
        for (int i = 0; i < 200000; i++) {
            char *p = malloc(16 + i % 2000);
            memset(p, 1, 16 + i % 2000);
            free(p);
        }
        char *big = malloc(5 << 20);
        memset(big, 2, 5 << 20);
        big = realloc(big, 9 << 20);
        free(big);
        puts("normal ok");
        return 0;
    }
    puts("survived: the error went unnoticed");
    return 0;
}
