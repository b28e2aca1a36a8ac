/* io.h on a POSIX host: a handle is the FILE pointer itself. */
#define _POSIX_C_SOURCE 200809L
#include "io.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* errno as io.h's portable reason (the wasm host reports the same codes) */
static int io_errno(int e) {
    switch (e) {
    case ENOENT: return IO_ERR_NOENT;
    case EACCES:
    case EPERM: return IO_ERR_ACCES;
    case EISDIR: return IO_ERR_ISDIR;
    case ENOTDIR: return IO_ERR_NOTDIR;
    case ENAMETOOLONG: return IO_ERR_NAMETOOLONG;
    case EROFS: return IO_ERR_ROFS;
    case ENOSPC: return IO_ERR_NOSPC;
    case EMFILE:
    case ENFILE: return IO_ERR_MFILE;
    case ELOOP: return IO_ERR_LOOP;
    default: return IO_ERR_OTHER;
    }
}

static FILE *io_file(intptr_t fd) {
    if (fd == IO_STDIN) return stdin;
    if (fd == IO_STDOUT) return stdout;
    if (fd == IO_STDERR) return stderr;
    if (fd == -1) return NULL;
    return (FILE *)fd;
}

intptr_t io_open(const char *path, const char *mode) {
    errno = 0;
    FILE *f = fopen(path, mode[0] == 'w' ? "wb" : "rb");
    if (!f) return io_errno(errno);
    /* a directory opens for reading here: say what it is, as wasm's host does */
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return IO_ERR_ISDIR;
    }
    return (intptr_t)f;
}

int64_t io_read(intptr_t fd, void *buf, size_t n) {
    FILE *f = io_file(fd);
    if (!f) return -1;
    errno = 0;
    size_t got = fread(buf, 1, n, f);
    if (got == 0 && ferror(f)) return io_errno(errno);
    return (int64_t)got;
}

int io_write(intptr_t fd, const void *buf, size_t n) {
    FILE *f = io_file(fd);
    if (!f) return -1;
    if (n && fwrite(buf, 1, n, f) != n) return -1;
    /* stdout to a file or pipe is block-buffered by stdio: a line (a
     * training step, an eval) is flushed as it is finished */
    if (fd == IO_STDERR || (fd == IO_STDOUT && n && memchr(buf, '\n', n))) fflush(f);
    return 0;
}

void io_flush(intptr_t fd) {
    FILE *f = io_file(fd);
    if (f) fflush(f);
}

int64_t io_size(intptr_t fd) {
    FILE *f = io_file(fd);
    if (!f || fd == IO_STDIN || fd == IO_STDOUT || fd == IO_STDERR) return -1;
    long cur = ftell(f);
    if (cur < 0 || fseek(f, 0, SEEK_END) != 0) return -1;
    long end = ftell(f);
    fseek(f, cur, SEEK_SET);
    return end;
}

int io_close(intptr_t fd) {
    FILE *f = io_file(fd);
    if (!f || fd == IO_STDIN || fd == IO_STDOUT || fd == IO_STDERR) return 0;
    const int failed = ferror(f);
    return fclose(f) != 0 || failed ? -1 : 0;
}

int io_remove(const char *path) {
    struct stat st; /* a device or a pipe given as the output is not deleted */
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
    return remove(path) == 0 ? 0 : -1;
}

int io_rename(const char *from, const char *to) {
    struct stat st; /* never over a device or a pipe (root may rename over /dev/full) */
    if (stat(to, &st) == 0 && !S_ISREG(st.st_mode)) return -1;
    return rename(from, to) == 0 ? 0 : -1;
}

double io_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
