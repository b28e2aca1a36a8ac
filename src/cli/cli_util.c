/* Plumbing for the CLI commands (see cli_util.h). */
#include "cli_util.h"

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

uint8_t *cli_read_file(const char *path, size_t *n) {
    intptr_t fd = io_open(path, "r");
    if (fd < 0) {
        err_printf("doze: cannot open %s\n", path);
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    int64_t size = io_size(fd);
    if (size > 0) cap = (size_t)size + 1;
    uint8_t *buf = malloc(cap);
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
            free(buf);
            buf = NULL;
            break;
        }
        if (got == 0) break;
        len += (size_t)got;
    }
    io_close(fd);
    if (!buf) err_printf("doze: cannot read %s\n", path);
    else *n = len;
    return buf;
}

doze_model *cli_load_model(const char *path, const doze_model_params *p) {
    doze_error e;
    intptr_t fd = io_open(path, "r");
    if (fd < 0) {
        err_printf("doze: cannot open %s\n", path);
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
            snprintf(e.message, sizeof e.message, "read error");
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
        err_printf("doze: cannot open %s\n", path);
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

/* options take a value unless they are known flags */
static int is_flag(const char *a) {
    static const char *const flags[] = {"--no-stop", "--no-bos", "--json", "--help", "--skip-table", "--quiet",
                                         "--no-ffn-gates", "--special", "--speculative", "--joint", NULL};
    for (int i = 0; flags[i]; i++)
        if (strcmp(a, flags[i]) == 0) return 1;
    return 0;
}

const char *cli_opt(int argc, char **argv, const char *name) {
    for (int i = 2; i < argc - 1; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return NULL;
}

int cli_flag(int argc, char **argv, const char *name) {
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], name) == 0) return 1;
    return 0;
}

long long cli_opt_int(int argc, char **argv, const char *name, long long def, int *bad) {
    const char *v = cli_opt(argc, argv, name);
    if (!v) return def;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0') {
        err_printf("doze: %s expects an integer, got \"%s\"\n", name, v);
        *bad = 1;
    }
    return x;
}

double cli_opt_float(int argc, char **argv, const char *name, double def, int *bad) {
    const char *v = cli_opt(argc, argv, name);
    if (!v) return def;
    char *end;
    double x = strtod(v, &end);
    if (*v == '\0' || *end != '\0') {
        err_printf("doze: %s expects a number, got \"%s\"\n", name, v);
        *bad = 1;
    }
    return x;
}

const char *cli_positional(int argc, char **argv, int index) {
    int k = 0;
    for (int i = 2; i < argc; i++) {
        if (argv[i][0] == '-' && argv[i][1] == '-') {
            if (!is_flag(argv[i])) i++; /* skip its value */
            continue;
        }
        if (k++ == index) return argv[i];
    }
    return NULL;
}

int cli_write_fn(void *ctx, const void *bytes, size_t n) {
    return io_write(*(intptr_t *)ctx, bytes, n);
}

int32_t *cli_encode(const doze_model *m, const char *text, size_t len, int flags, int *n, doze_error *e) {
    int need = 0;
    if (doze_tokenize(m, text, len, flags, NULL, 0, &need, e) != DOZE_OK) return NULL;
    int32_t *ids = malloc((size_t)(need > 0 ? need : 1) * sizeof *ids);
    if (!ids) {
        e->code = DOZE_ERR_OUT_OF_MEMORY;
        strcpy(e->message, "out of memory");
        return NULL;
    }
    if (doze_tokenize(m, text, len, flags, ids, need, n, e) != DOZE_OK) {
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
