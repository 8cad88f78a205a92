/* Checks that LD_PRELOAD really put libhakmem.so's malloc in front of libc's:
 * hakmem's extension symbol is visible, and malloc/free/calloc/realloc and
 * the aligned entry points resolve to libhakmem.so, not to libc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void check_symbol(const char *name)
{
    void *addr = dlsym(RTLD_DEFAULT, name);
    Dl_info info;
    if (!addr) {
        fprintf(stderr, "FAIL: dlsym(RTLD_DEFAULT, \"%s\") is NULL\n", name);
        failures++;
        return;
    }
    if (!dladdr(addr, &info) || !info.dli_fname || !strstr(info.dli_fname, "libhakmem.so")) {
        fprintf(stderr, "FAIL: %s resolves to %s, not libhakmem.so\n", name,
                info.dli_fname ? info.dli_fname : "(unknown)");
        failures++;
    }
}

int main(void)
{
    if (!dlsym(RTLD_DEFAULT, "hak_stats_print")) {
        fprintf(stderr, "FAIL: hak_stats_print not found: libhakmem.so is not loaded\n");
        failures++;
    }
    static const char *const names[] = {
        "malloc", "free", "calloc", "realloc", "reallocarray", "posix_memalign",
        "aligned_alloc", "memalign", "valloc", "pvalloc", "malloc_usable_size",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        check_symbol(names[i]);

    /* The address this program's own call of malloc jumps to, through its PLT. */
    void *(*volatile m)(size_t) = malloc;
    Dl_info info;
    if (!dladdr((void *)m, &info) || !info.dli_fname || !strstr(info.dli_fname, "libhakmem.so")) {
        fprintf(stderr, "FAIL: &malloc (%p) is in %s, not libhakmem.so\n", (void *)m,
                info.dli_fname ? info.dli_fname : "(unknown)");
        failures++;
    }
    /* A block from malloc is one hakmem knows: usable size is non-zero and no
     * foreign-pointer warning is printed (the script checks stderr). */
    void *p = malloc(100);
    if (malloc_usable_size(p) < 100) {
        fprintf(stderr, "FAIL: malloc_usable_size(malloc(100)) = %zu\n", malloc_usable_size(p));
        failures++;
    }
    free(p);
    /* strdup allocates inside libc: its block must come from hakmem too. */
    char *s = strdup("hakmem");
    if (malloc_usable_size(s) < 7) {
        fprintf(stderr, "FAIL: malloc_usable_size(strdup(...)) = %zu\n", malloc_usable_size(s));
        failures++;
    }
    free(s);
    if (failures)
        return 1;
    printf("override_check: malloc family resolves to libhakmem.so\n");
    return 0;
}
