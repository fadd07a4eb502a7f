/* Fault-safe reads, re-checks and symbol lookup, used by the Python layer. */
#define _GNU_SOURCE
#include "internal.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

int fa_read(uint64_t addr, void *out, size_t n) {
    struct iovec local = {out, n}, remote = {(void *)(uintptr_t)addr, n};
    ssize_t got = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
    if (got == (ssize_t)n)
        return 0;
    if (got < 0) { /* process_vm_readv refused (seccomp, old kernel): /proc/self/mem */
        int fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            got = pread(fd, out, n, (off_t)addr);
            close(fd);
            if (got == (ssize_t)n)
                return 0;
        }
    }
    return -1;
}

int fa_still_held(uint64_t addr, int kind, int32_t tid) {
    /* maxusers/maxthreads: generous, since the question is only "is it still this lock, held" */
    if (kind == FA_KIND_MUTEX) {
        fa_mutex_layout m;
        if (fa_read(addr, &m, sizeof m) != 0)
            return -1;
        return fa_valid_mutex(&m, tid, FA_MAX_TIDS + 1);
    }
    if (kind == FA_KIND_RWLOCK) {
        fa_rwlock_layout r;
        if (fa_read(addr, &r, sizeof r) != 0)
            return -1;
        return fa_valid_rwlock(&r, tid, FA_MAX_TIDS + 1);
    }
    return -1;
}

static void copy_str(char *out, size_t outlen, const char *s) {
    if (outlen == 0)
        return;
    out[0] = '\0';
    if (s) {
        strncpy(out, s, outlen - 1);
        out[outlen - 1] = '\0';
    }
}

int fa_dladdr(uint64_t addr, char *fname, size_t fnlen, char *sname, size_t snlen,
              uint64_t *fbase, uint64_t *saddr) {
    Dl_info info;
    memset(&info, 0, sizeof info);
    if (!dladdr((void *)(uintptr_t)addr, &info))
        return 0;
    copy_str(fname, fnlen, info.dli_fname);
    copy_str(sname, snlen, info.dli_sname);
    *fbase = (uint64_t)(uintptr_t)info.dli_fbase;
    *saddr = (uint64_t)(uintptr_t)info.dli_saddr;
    return 1;
}
