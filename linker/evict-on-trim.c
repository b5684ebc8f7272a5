// LD_PRELOAD shim for linker/profile-hot-text: when hvctl drops the pages of a mapping
// (CodeResidency's MADV_DONTNEED), they are also evicted from the page cache. On a device without
// readahead every later fault then brings in, and maps, only the page it needs, so the pages
// mapped at the end are exactly those that ran after the VMs were built.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

int madvise(void *address, size_t length, int advice) {
    static int (*real)(void *, size_t, int);
    if (!real) real = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "madvise");
    if (advice == MADV_DONTNEED) {
        real(address, length, MADV_PAGEOUT);
        int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            close(fd);
        }
    }
    return real(address, length, advice);
}
