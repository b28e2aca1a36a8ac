/* Plumbing for the CLI commands (see cli_util.h). */
#include "cli_util.h"
#include "commands.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void vwrite(intptr_t fd, const char *fmt, va_list ap) {
    char small[1024];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    if ((size_t)n < sizeof small) {
        io_write(fd, small, (size_t)n);
    } else {
        char *big = malloc((size_t)n + 1);
        if (big) {
            vsnprintf(big, (size_t)n + 1, fmt, ap2);
            io_write(fd, big, (size_t)n);
            free(big);
        }
    }
    va_end(ap2);
}

void out_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vwrite(IO_STDOUT, fmt, ap);
    va_end(ap);
}

void err_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vwrite(IO_STDERR, fmt, ap);
    va_end(ap);
}

void out_bytes(const char *p, size_t n) { io_write(IO_STDOUT, p, n); }

int cli_print_error(const char *what, const doze_error *e) {
    err_printf("doze: %s: %s (%s)\n", what, e->message, doze_status_name(e->code));
    return 1;
}

int cli_ends_generation(const doze_model *m, int next, int sampled, int no_stop) {
    if (no_stop) return 0;
    return next == doze_model_get_info(m)->bos_id || (sampled && doze_token_is_eog(m, next));
}

int cli_print_piece(const doze_model *m, int prev, int next) {
    char piece[DOZE_MAX_PIECE];
    size_t plen = 0;
    doze_error e;
    if (doze_token_to_piece(m, prev, next, piece, sizeof piece, &plen, &e) != DOZE_OK)
        return cli_print_error("decode", &e);
    out_bytes(piece, plen);
    io_flush(IO_STDOUT);
    return 0;
}

const char *io_reason(int64_t code) {
    switch (code) {
    case IO_ERR_NOENT: return "No such file or directory (ENOENT)";
    case IO_ERR_ACCES: return "Permission denied (EACCES)";
    case IO_ERR_ISDIR: return "Is a directory (EISDIR)";
    case IO_ERR_NOTDIR: return "Not a directory (ENOTDIR)";
    case IO_ERR_NAMETOOLONG: return "File name too long (ENAMETOOLONG)";
    case IO_ERR_ROFS: return "Read-only file system (EROFS)";
    case IO_ERR_NOSPC: return "No space left on device (ENOSPC)";
    case IO_ERR_MFILE: return "Too many open files (EMFILE)";
    case IO_ERR_LOOP: return "Too many levels of symbolic links (ELOOP)";
    default: return "I/O error";
    }
}

intptr_t cli_open_write(const char *path) {
    intptr_t fd = io_open(path, "w");
    if (fd < 0) err_printf("doze: cannot write %s: %s\n", path, io_reason(fd));
    return fd;
}

int cli_close_write(intptr_t fd, const char *path, int ok) {
    if (fd < 0) return 1;
    const int closed = io_close(fd) == 0;
    if (ok && closed) return 0;
    const int removed = io_remove(path) == 0;
    err_printf("doze: cannot write %s: the bytes did not all reach the file%s\n", path,
               removed ? " (the incomplete file is deleted)" : "");
    return 1;
}

void cli_discard_write(intptr_t fd, const char *path) {
    if (fd < 0) return;
    io_close(fd);
    io_remove(path);
}

int cli_write_files(int n, const char *const *paths, const void *const *bytes, const size_t *len) {
    enum { MAX_FILES = 4 };
    intptr_t fd[MAX_FILES];
    if (n < 1 || n > MAX_FILES) return 1;
    int opened = 0;
    while (opened < n && (fd[opened] = cli_open_write(paths[opened])) >= 0) opened++;
    if (opened < n) { /* one cannot be written: none is */
        for (int i = 0; i < opened; i++) cli_discard_write(fd[i], paths[i]);
        if (n > 1) err_printf("doze: nothing written (the run's %d files go together)\n", n);
        return 1;
    }
    int ok = 1;
    for (int i = 0; i < n; i++) {
        if (!ok) {
            cli_discard_write(fd[i], paths[i]);
            continue;
        }
        /* a failed write or close deletes file i and prints why */
        if (cli_close_write(fd[i], paths[i], io_write(fd[i], bytes[i], len[i]) == 0) != 0) {
            ok = 0;
            for (int j = 0; j < i; j++) io_remove(paths[j]); /* complete, but alone */
        }
    }
    if (!ok && n > 1) err_printf("doze: nothing written (the run's %d files go together)\n", n);
    return ok ? 0 : 1;
}

int cli_write_replace(const char *path, const void *bytes, size_t n) {
    char tmp[4096];
    const int len = snprintf(tmp, sizeof tmp, "%s.partial", path);
    intptr_t fd = len > 0 && (size_t)len < sizeof tmp ? io_open(tmp, "w") : -1;
    if (fd >= 0) {
        if (cli_close_write(fd, tmp, io_write(fd, bytes, n) == 0) != 0) {
            err_printf("doze: %s is left as it was\n", path);
            return 1;
        }
        if (io_rename(tmp, path) == 0) return 0;
        io_remove(tmp);
    }
    const char *const paths[1] = {path};
    const void *const data[1] = {bytes};
    return cli_write_files(1, paths, data, &n);
}

uint8_t *cli_read_file(const char *path, size_t *n) {
    intptr_t fd = io_open(path, "r");
    if (fd < 0) {
        err_printf("doze: cannot open %s: %s\n", path, io_reason(fd));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    int64_t size = io_size(fd);
    if (size > 0) cap = (size_t)size + 1;
    uint8_t *buf = malloc(cap);
    int64_t why = 0;
    for (;;) {
        if (!buf) break;
        if (len == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        int64_t got = io_read(fd, buf + len, cap - len);
        if (got < 0) {
            why = got;
            free(buf);
            buf = NULL;
            break;
        }
        if (got == 0) break;
        len += (size_t)got;
    }
    io_close(fd);
    if (!buf) err_printf("doze: cannot read %s: %s\n", path, why ? io_reason(why) : "out of memory");
    else *n = len;
    return buf;
}

doze_model *cli_load_model(const char *path, const doze_model_params *p) {
    doze_error e;
    intptr_t fd = io_open(path, "r");
    if (fd < 0) {
        err_printf("doze: cannot open %s: %s\n", path, io_reason(fd));
        return NULL;
    }
    doze_loader *ld = doze_loader_new(p, &e);
    if (!ld) {
        io_close(fd);
        cli_print_error(path, &e);
        return NULL;
    }
    size_t chunk = 1 << 20;
    uint8_t *buf = malloc(chunk);
    doze_status st = buf ? DOZE_OK : DOZE_ERR_OUT_OF_MEMORY;
    if (!buf) snprintf(e.message, sizeof e.message, "out of memory"), e.code = st;
    while (st == DOZE_OK) {
        int64_t got = io_read(fd, buf, chunk);
        if (got < 0) {
            st = DOZE_ERR_IO;
            e.code = st;
            snprintf(e.message, sizeof e.message, "cannot read: %s", io_reason(got));
            break;
        }
        if (got == 0) break;
        st = doze_loader_feed(ld, buf, (size_t)got, &e);
    }
    free(buf);
    io_close(fd);
    doze_model *m = NULL;
    if (st == DOZE_OK) st = doze_loader_finish(ld, &m, &e);
    doze_loader_free(ld);
    if (st != DOZE_OK) {
        cli_print_error(path, &e);
        return NULL;
    }
    return m;
}

doze_vocab *cli_load_vocab(const char *path) {
    doze_error e;
    intptr_t fd = io_open(path, "r");
    if (fd < 0) {
        err_printf("doze: cannot open %s: %s\n", path, io_reason(fd));
        return NULL;
    }
    /* the header is at the start: read more of the file until it parses */
    size_t have = 0, want = 1 << 20;
    uint8_t *buf = NULL;
    doze_vocab *v = NULL;
    doze_status st = DOZE_ERR_TRUNCATED;
    int eof = 0;
    while (st == DOZE_ERR_TRUNCATED && !eof) {
        uint8_t *p = realloc(buf, want);
        if (!p) {
            st = e.code = DOZE_ERR_OUT_OF_MEMORY;
            snprintf(e.message, sizeof e.message, "out of memory");
            break;
        }
        buf = p;
        while (have < want) {
            int64_t got = io_read(fd, buf + have, want - have);
            if (got <= 0) {
                eof = 1;
                break;
            }
            have += (size_t)got;
        }
        st = doze_vocab_load(buf, have, &v, &e);
        want *= 2;
    }
    free(buf);
    io_close(fd);
    if (st != DOZE_OK) {
        cli_print_error(path, &e);
        return NULL;
    }
    return v;
}

int cli_write_fn(void *ctx, const void *bytes, size_t n) {
    return io_write(*(intptr_t *)ctx, bytes, n);
}

int32_t *cli_encode(const doze_model *m, const char *text, size_t len, int flags, int *n, doze_error *e) {
    return cli_encode_literal(m, text, len, flags, NULL, 0, n, e);
}

int32_t *cli_encode_literal(const doze_model *m, const char *text, size_t len, int flags, const size_t *literal,
                            int n_literal, int *n, doze_error *e) {
    int need = 0;
    if (doze_tokenize_literal(m, text, len, flags, literal, n_literal, NULL, 0, &need, e) != DOZE_OK) return NULL;
    int32_t *ids = malloc((size_t)(need > 0 ? need : 1) * sizeof *ids);
    if (!ids) {
        e->code = DOZE_ERR_OUT_OF_MEMORY;
        strcpy(e->message, "out of memory");
        return NULL;
    }
    if (doze_tokenize_literal(m, text, len, flags, literal, n_literal, ids, need, n, e) != DOZE_OK) {
        free(ids);
        return NULL;
    }
    return ids;
}

int32_t *cli_encode_file(const doze_model *m, const char *path, size_t max_bytes, int *n, doze_error *e) {
    size_t len = 0;
    uint8_t *text = cli_read_file(path, &len);
    if (!text) {
        e->code = DOZE_ERR_IO;
        snprintf(e->message, sizeof e->message, "cannot read %s", path);
        return NULL;
    }
    if (len > max_bytes) {
        len = max_bytes;
        while (len > 0 && (text[len] & 0xC0) == 0x80) len--;
    }
    int32_t *ids = cli_encode(m, (const char *)text, len, DOZE_TOKENIZE_ADD_SPECIAL, n, e);
    free(text);
    return ids;
}

int cli_experts_used_option(const cli_args *a, doze_model_params *mp) {
    long long k = cli_get_int(a, "--experts-used", 0);
    if (cli_has(a, "--experts-used") && (k < 1 || k > 1024))
        return cli_usage_error(a, "--experts-used must be in 1..the model's experts");
    mp->experts_used = (int)k;
    return 0;
}

int cli_ffn_block_option(const cli_args *a, doze_model_params *mp) {
    long long fb = cli_get_int(a, "--ffn-block", 0);
    if (cli_has(a, "--ffn-block") && (fb < 16 || fb > DOZE_FFN_BLOCK_SIZE))
        return cli_usage_error(a, "--ffn-block must be in 16..%d", DOZE_FFN_BLOCK_SIZE);
    mp->ffn_block = (int)fb;
    return 0;
}

int cli_penalty_options(const cli_args *a, int context, doze_sampler_params *sp) {
    sp->min_p = (float)cli_get_float(a, "--min-p", sp->min_p);
    sp->repeat_penalty = (float)cli_get_float(a, "--repeat-penalty", sp->repeat_penalty);
    long long last_n = cli_get_int(a, "--repeat-last-n", sp->repeat_last_n);
    if (last_n < -1 || last_n > (1 << 30)) return cli_usage_error(a, "--repeat-last-n must be -1 or in 0..%d", 1 << 30);
    sp->repeat_last_n = last_n == -1 ? context : (int)last_n;
    sp->frequency_penalty = (float)cli_get_float(a, "--frequency-penalty", sp->frequency_penalty);
    sp->presence_penalty = (float)cli_get_float(a, "--presence-penalty", sp->presence_penalty);
    return 0;
}

int cli_threads_option(const cli_args *a, doze_model_params *mp) {
    long long t = cli_get_int(a, "--threads", 1);
    if (t < 1 || t > 64) return cli_usage_error(a, "--threads must be in 1..64");
    mp->threads = (int)t;
    return 0;
}

int cli_parse_range(const char *text, float *lo, float *hi) {
    char *end = NULL;
    if (!text || isspace((unsigned char)*text)) return 0;
    const float a = strtof(text, &end);
    if (end == text || *end != ':' || isspace((unsigned char)end[1])) return 0;
    const char *b_at = end + 1;
    const float b = strtof(b_at, &end);
    if (end == b_at || *end != '\0' || !isfinite(a) || !isfinite(b)) return 0;
    *lo = a;
    *hi = b;
    return 1;
}
