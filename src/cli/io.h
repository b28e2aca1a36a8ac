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

/* Why an open or a read failed: the negative values io_open and io_read
 * return (io_reason names them). */
enum {
    IO_ERR_OTHER = -1,
    IO_ERR_NOENT = -2,       /* no such file or directory */
    IO_ERR_ACCES = -3,       /* permission denied */
    IO_ERR_ISDIR = -4,       /* is a directory */
    IO_ERR_NOTDIR = -5,      /* a component of the path is not a directory */
    IO_ERR_NAMETOOLONG = -6,
    IO_ERR_ROFS = -7,        /* read-only file system */
    IO_ERR_NOSPC = -8,       /* no space left on device */
    IO_ERR_MFILE = -9,       /* too many open files */
    IO_ERR_LOOP = -10,       /* too many symbolic links */
};

/* Opens a file; mode "r" (read) or "w" (create/truncate). Returns a handle
 * (never 1 or 2), or a negative IO_ERR_* on failure. */
intptr_t io_open(const char *path, const char *mode);
/* "No such file or directory (ENOENT)" for a negative IO_ERR_* code. */
const char *io_reason(int64_t code);
/* Reads up to n bytes; returns the count (0 at end of file) or a negative
 * IO_ERR_*. */
int64_t io_read(intptr_t fd, void *buf, size_t n);
/* Writes all n bytes (fd may be IO_STDOUT / IO_STDERR); 0 on success. */
int io_write(intptr_t fd, const void *buf, size_t n);
/* Size of an open file in bytes, or -1 when unknown. */
int64_t io_size(intptr_t fd);
/* Closes a file: 0, or -1 when what was written to it did not all reach it
 * (a full disk, a file size limit: buffered writes fail here). */
int io_close(intptr_t fd);
/* Deletes a regular file (an output left incomplete; never a device such as
 * /dev/full or a pipe); 0 on success. */
int io_remove(const char *path);
/* Renames a file over another (replacing it at once where the host can:
 * rename(2) natively), only over a regular file or a new name, never a
 * device or a pipe; 0 on success, -1 when it does not. */
int io_rename(const char *from, const char *to);
/* Hands what was written to stdout/stderr to the reader now: generated
 * text streams piece by piece, progress lines appear as they are made even
 * when stdout is a file or a pipe. */
void io_flush(intptr_t fd);
/* Monotonic milliseconds. */
double io_now_ms(void);

#endif
