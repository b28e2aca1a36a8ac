/* io.h in WebAssembly: every call goes to a host function imported from the
 * "env" module, provided by js/src/wasm.js (Node: fs.*Sync; browser: console
 * for stdout/stderr, no files). Handles are small ints chosen by the host;
 * 1 and 2 are stdout/stderr, -1 is failure. */
#include "io.h"

#include <string.h>

#define DOZE_HOST_IMPORT(name) \
    __attribute__((import_module("env"), import_name(#name)))

/* mode: 0 = read, 1 = write (create/truncate). Returns a handle, or a
 * negative IO_ERR_* (io.h) saying why not. */
DOZE_HOST_IMPORT(host_open) int32_t host_open(const char *path, uint32_t path_len, int32_t mode);
/* Reads up to n bytes at the file's current position; count, 0 at EOF, or a
 * negative IO_ERR_*. */
DOZE_HOST_IMPORT(host_read) int32_t host_read(int32_t fd, void *buf, uint32_t n);
/* Writes all n bytes; 0 on success, -1 on failure. */
DOZE_HOST_IMPORT(host_write) int32_t host_write(int32_t fd, const void *buf, uint32_t n);
/* Size in bytes, or -1 when unknown. */
DOZE_HOST_IMPORT(host_size) double host_size(int32_t fd);
/* 0, or -1 when the file could not be closed */
DOZE_HOST_IMPORT(host_close) int32_t host_close(int32_t fd);
/* Deletes a file; 0 on success, -1 on failure. */
DOZE_HOST_IMPORT(host_remove) int32_t host_remove(const char *path, uint32_t path_len);
/* Renames a file over another; 0 on success, -1 when it cannot. */
DOZE_HOST_IMPORT(host_rename) int32_t host_rename(const char *from, uint32_t from_len, const char *to, uint32_t to_len);
/* Monotonic milliseconds. */
DOZE_HOST_IMPORT(host_now) double host_now(void);

/* Keep each host call well inside i32 range. */
#define IO_CHUNK ((size_t)1 << 30)

intptr_t io_open(const char *path, const char *mode) {
    if (!path || !mode) return IO_ERR_OTHER;
    int32_t fd = host_open(path, (uint32_t)strlen(path), mode[0] == 'w' ? 1 : 0);
    if (fd < 0) return fd >= IO_ERR_LOOP ? fd : IO_ERR_OTHER;
    if (fd == IO_STDIN || fd == IO_STDOUT || fd == IO_STDERR) return IO_ERR_OTHER;
    return (intptr_t)fd;
}

/* Like fread: keeps reading until n bytes or end of file (handle 0 is
 * stdin: the host's read(0, ...) waits for input). */
int64_t io_read(intptr_t fd, void *buf, size_t n) {
    if (fd < 0) return -1;
    unsigned char *p = (unsigned char *)buf;
    size_t got = 0;
    while (got < n) {
        size_t want = n - got;
        if (want > IO_CHUNK) want = IO_CHUNK;
        int32_t r = host_read((int32_t)fd, p + got, (uint32_t)want);
        if (r < 0) return got ? (int64_t)got : (r >= IO_ERR_LOOP ? r : IO_ERR_OTHER);
        if (r == 0) break;
        got += (size_t)r;
    }
    return (int64_t)got;
}

int io_write(intptr_t fd, const void *buf, size_t n) {
    if (fd < 0) return -1;
    const unsigned char *p = (const unsigned char *)buf;
    while (n) {
        size_t chunk = n > IO_CHUNK ? IO_CHUNK : n;
        if (host_write((int32_t)fd, p, (uint32_t)chunk) != 0) return -1;
        p += chunk;
        n -= chunk;
    }
    return 0;
}

int64_t io_size(intptr_t fd) {
    if (fd < 0 || fd == IO_STDIN || fd == IO_STDOUT || fd == IO_STDERR) return -1;
    double s = host_size((int32_t)fd);
    return s < 0 ? -1 : (int64_t)s;
}

/* the host writes through at once (a failed write is seen by io_write) */
int io_close(intptr_t fd) {
    if (fd < 0 || fd == IO_STDIN || fd == IO_STDOUT || fd == IO_STDERR) return 0;
    return host_close((int32_t)fd) == 0 ? 0 : -1;
}

int io_remove(const char *path) {
    if (!path) return -1;
    return host_remove(path, (uint32_t)strlen(path)) == 0 ? 0 : -1;
}

int io_rename(const char *from, const char *to) {
    if (!from || !to) return -1;
    return host_rename(from, (uint32_t)strlen(from), to, (uint32_t)strlen(to)) == 0 ? 0 : -1;
}

/* the host writes stdout and stderr as they come: nothing is held here */
void io_flush(intptr_t fd) { (void)fd; }

double io_now_ms(void) { return host_now(); }
