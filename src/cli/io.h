/* The CLI's window on the host: files, stdout/stderr, a clock. Natively it
 * is stdio (io_native.c); in wasm the JS host provides it (wasm/io_host.c
 * imports host_* functions from js/). The library itself never does I/O. */
#ifndef DOZE_CLI_IO_H
#define DOZE_CLI_IO_H

#include <stddef.h>
#include <stdint.h>

#define IO_STDIN 0 /* io_read only (doze chat's input) */
#define IO_STDOUT 1
#define IO_STDERR 2

/* Opens a file; mode "r" (read) or "w" (create/truncate). Returns a handle
 * (never 1 or 2), or -1 on failure. */
intptr_t io_open(const char *path, const char *mode);
/* Reads up to n bytes; returns the count (0 at end of file) or -1. */
int64_t io_read(intptr_t fd, void *buf, size_t n);
/* Writes all n bytes (fd may be IO_STDOUT / IO_STDERR); 0 on success. */
int io_write(intptr_t fd, const void *buf, size_t n);
/* Size of an open file in bytes, or -1 when unknown. */
int64_t io_size(intptr_t fd);
void io_close(intptr_t fd);
/* Monotonic milliseconds. */
double io_now_ms(void);

#endif
