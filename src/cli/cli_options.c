/* The option-table parser and the help printed from the same tables (see
 * cli_options.h). */
#include "cli_options.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"

const char *const cli_weight_types[] = {"f32",  "f16",  "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1",
                                          "iq4_nl", "iq4_xs", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q4_k_m", NULL};

typedef void (*print_fn)(const char *fmt, ...);

static print_fn printer(int to_stderr) { return to_stderr ? err_printf : out_printf; }

static int n_options(const cli_command *c) {
    int n = 0;
    while (c->options && c->options[n].name) n++;
    return n;
}

/* "--steps N", "--type f32|f16|q8_0|q4_0", "--json" into buf */
static void option_label(const cli_option *o, char *buf, size_t cap) {
    size_t at = (size_t)snprintf(buf, cap, "%s", o->name);
    if (o->kind == CLI_FLAG || at >= cap) return;
    if (o->choices) {
        for (int i = 0; o->choices[i] && at < cap; i++)
            at += (size_t)snprintf(buf + at, cap - at, "%s%s", i ? "|" : " ", o->choices[i]);
    } else {
        snprintf(buf + at, cap - at, " %s", o->arg ? o->arg : "VALUE");
    }
}

void cli_print_usage(const cli_command *c, int to_stderr) {
    print_fn p = printer(to_stderr);
    for (int f = 0; c->forms[f]; f++) {
        p("%s doze %s%s%s", f ? "      " : "usage:", c->name, c->forms[f][0] ? " " : "", c->forms[f]);
        for (const cli_option *o = c->options; o && o->name; o++) {
            if (!o->required) continue;
            char label[256];
            option_label(o, label, sizeof label);
            p(" %s", label);
        }
        p("%s\n", n_options(c) ? " [options]" : "");
    }
}

/* help text with '\n' continued under the help column */
static void print_wrapped_help(print_fn p, const char *help, int indent) {
    for (const char *s = help; *s;) {
        const char *e = strchr(s, '\n');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        p("%.*s\n", (int)len, s);
        if (!e) break;
        s = e + 1;
        p("%*s", indent, "");
    }
}

static void print_options(const cli_command *c, print_fn p) {
    if (!n_options(c)) return;
    const int col = 26;
    p("\noptions:\n");
    for (const cli_option *o = c->options; o->name; o++) {
        char label[256];
        option_label(o, label, sizeof label);
        int len = (int)strlen(label) + 2;
        if (len + 2 > col) p("  %s\n%*s", label, col, "");
        else p("  %s%*s", label, col - len, "");
        print_wrapped_help(p, o->help ? o->help : "", col);
    }
    p("  %-*s%s\n", col - 2, "--help, -h", "this help");
}

void cli_print_help(const cli_command *c, int to_stderr) {
    print_fn p = printer(to_stderr);
    cli_print_usage(c, to_stderr);
    if (c->description) p("\n%s\n", c->description);
    else if (c->summary) p("\n%s\n", c->summary);
    print_options(c, p);
}

/* the usage error: message, then the command's usage and options */
static int usage_error_v(const cli_command *c, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    err_printf("doze %s: %s\n", c->name, msg);
    cli_print_usage(c, 1);
    print_options(c, err_printf);
    return 2;
}

static int usage_error(const cli_command *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int usage_error(const cli_command *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = usage_error_v(c, fmt, ap);
    va_end(ap);
    return rc;
}

int cli_usage_error(const cli_args *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = usage_error_v(a->cmd, fmt, ap);
    va_end(ap);
    return rc;
}

static int find_option(const cli_command *c, const char *name, size_t len) {
    for (int i = 0; c->options && c->options[i].name; i++)
        if (strlen(c->options[i].name) == len && strncmp(c->options[i].name, name, len) == 0) return i;
    return -1;
}

/* edit distance with a cap, for "did you mean" */
static int edit_distance(const char *a, size_t la, const char *b) {
    size_t lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int d[64][64];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            int m = sub < del ? sub : del;
            d[i][j] = m < ins ? m : ins;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < d[i][j])
                d[i][j] = d[i - 2][j - 2] + 1; /* a swap of two letters */
        }
    return d[la][lb];
}

static const char *closest_option(const cli_command *c, const char *name, size_t len) {
    const char *best = NULL;
    int best_d = 3; /* no suggestion beyond two edits */
    for (int i = 0; c->options && c->options[i].name; i++) {
        int d = edit_distance(name, len, c->options[i].name);
        if (d < best_d) best_d = d, best = c->options[i].name;
    }
    return best;
}

/* checks a value against the option's kind; 0 when it fits */
static int check_value(const cli_command *c, const cli_option *o, const char *v) {
    char *end = NULL;
    errno = 0;
    if (o->kind == CLI_SEED && v[0] != '-') {
        /* a seed is 64 bits: 0..2^64-1 (JS takes the same range); negative ones
         * stand for their two's complement, as they always did */
        (void)strtoull(v, &end, 10);
        if (*v == '\0' || *end != '\0' || isspace((unsigned char)*v))
            return usage_error(c, "%s expects a whole number, got \"%s\"", o->name, v);
        if (errno == ERANGE) return usage_error(c, "%s: %s is out of range (0..2^64-1)", o->name, v);
    } else if (o->kind == CLI_INT || o->kind == CLI_SEED) {
        long long x = strtoll(v, &end, 10);
        if (*v == '\0' || *end != '\0' || isspace((unsigned char)*v))
            return usage_error(c, "%s expects a whole number, got \"%s\"", o->name, v);
        /* every count, size and index the commands take is an int: a larger
         * value is refused here, not cut to its low bits */
        if (errno == ERANGE || (o->kind == CLI_INT && (x < INT_MIN || x > INT_MAX)))
            return usage_error(c, "%s: %s is out of range", o->name, v);
    } else if (o->kind == CLI_FLOAT) {
        double x = strtod(v, &end);
        if (*v == '\0' || *end != '\0' || isspace((unsigned char)*v))
            return usage_error(c, "%s expects a number, got \"%s\"", o->name, v);
        if (!isfinite(x) || errno == ERANGE) return usage_error(c, "%s: %s is not a finite number", o->name, v);
    } else if (o->kind == CLI_STRING && o->choices) {
        for (int i = 0; o->choices[i]; i++)
            if (strcmp(o->choices[i], v) == 0) return 0;
        char list[256];
        size_t at = 0;
        for (int i = 0; o->choices[i] && at < sizeof list; i++)
            at += (size_t)snprintf(list + at, sizeof list - at, "%s%s", i ? ", " : "", o->choices[i]);
        return usage_error(c, "%s takes one of %s, not \"%s\"", o->name, list, v);
    }
    return 0;
}

/* word i of a usage form, into buf; 0 when there is none */
static int form_word(const char *s, int i, char *buf, size_t cap) {
    for (int k = 0; *s; k++) {
        while (*s == ' ') s++;
        const char *e = s;
        while (*e && *e != ' ') e++;
        if (e == s) return 0;
        if (k == i) {
            snprintf(buf, cap, "%.*s", (int)(e - s), s);
            return 1;
        }
        s = e;
    }
    return 0;
}

/* the name of the i-th positional ("MODEL") when every form agrees on it */
static int positional_name(const cli_command *c, int i, char *buf, size_t cap) {
    if (!c->forms[0] || !form_word(c->forms[0], i, buf, cap) || buf[0] == '[' || buf[0] == '-') return 0;
    for (int f = 1; c->forms[f]; f++) {
        char other[64];
        if (!form_word(c->forms[f], i, other, sizeof other) || strcmp(other, buf) != 0) return 0;
    }
    return 1;
}

int cli_parse(const cli_command *c, int argc, char **argv, cli_args *a) {
    memset(a, 0, sizeof *a);
    a->cmd = c;
    const int n_opt = n_options(c);
    if (n_opt > CLI_MAX_OPTIONS || c->max_pos > CLI_MAX_POSITIONAL) {
        err_printf("doze %s: internal: the option table is too large\n", c->name);
        return 2;
    }
    /* --help wins over every error, wherever it is (but not as a value) */
    int only_pos = 0;
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        if (only_pos || s[0] != '-' || s[1] == '\0') continue;
        if (strcmp(s, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            cli_print_help(c, 0);
            return 0;
        }
        size_t len = strcspn(s, "=");
        int k = find_option(c, s, len);
        if (k >= 0 && c->options[k].kind != CLI_FLAG && s[len] != '=') i++; /* its value */
    }
    only_pos = 0;
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        if (!only_pos && strcmp(s, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (only_pos || s[0] != '-' || s[1] == '\0') {
            if (a->n_pos >= c->max_pos) {
                if (c->max_pos == 0) return usage_error(c, "takes no arguments, got \"%s\"", s);
                return usage_error(c, "unexpected argument \"%s\" (it takes at most %d)", s, c->max_pos);
            }
            a->pos[a->n_pos++] = s;
            continue;
        }
        size_t len = strcspn(s, "=");
        int k = find_option(c, s, len);
        if (k < 0) {
            const char *near = closest_option(c, s, len);
            if (near) return usage_error(c, "unknown option %.*s (did you mean %s?)", (int)len, s, near);
            return usage_error(c, "unknown option %.*s", (int)len, s);
        }
        const cli_option *o = &c->options[k];
        /* given twice: the last one counts, so that scripts can append overrides */
        if (o->kind == CLI_FLAG) {
            if (s[len] == '=') return usage_error(c, "%s takes no value", o->name);
            a->values[k] = "";
            continue;
        }
        const char *v = NULL;
        if (s[len] == '=') {
            v = s + len + 1;
        } else {
            if (i + 1 >= argc)
                return usage_error(c, "%s needs a value (%s)", o->name, o->arg ? o->arg : "VALUE");
            v = argv[++i];
            /* "--steps --temp 0": the value is missing, not "--temp" */
            size_t vl = strcspn(v, "=");
            if (v[0] == '-' && v[1] == '-' && (find_option(c, v, vl) >= 0 || strcmp(v, "--help") == 0))
                return usage_error(c, "%s needs a value (%s) before %s", o->name, o->arg ? o->arg : "VALUE", v);
        }
        if (check_value(c, o, v)) return 2;
        a->values[k] = v;
    }
    if (a->n_pos < c->min_pos) {
        char name[64];
        if (positional_name(c, a->n_pos, name, sizeof name)) return usage_error(c, "missing %s", name);
        return usage_error(c, "missing arguments (%d given, %d needed)", a->n_pos, c->min_pos);
    }
    for (int k = 0; k < n_opt; k++)
        if (c->options[k].required && !a->values[k])
            return usage_error(c, "missing %s %s", c->options[k].name, c->options[k].arg ? c->options[k].arg : "");
    return -1;
}

static int lookup(const cli_args *a, const char *name) {
    int k = find_option(a->cmd, name, strlen(name));
    if (k < 0) err_printf("doze %s: internal: option %s is not in its table\n", a->cmd->name, name);
    return k;
}

const char *cli_get(const cli_args *a, const char *name) {
    int k = lookup(a, name);
    return k < 0 ? NULL : a->values[k];
}

int cli_has(const cli_args *a, const char *name) { return cli_get(a, name) != NULL; }

long long cli_get_int(const cli_args *a, const char *name, long long def) {
    const char *v = cli_get(a, name);
    return v ? strtoll(v, NULL, 10) : def;
}

uint64_t cli_seed_value(const char *v) {
    return v[0] == '-' ? (uint64_t)strtoll(v, NULL, 10) : (uint64_t)strtoull(v, NULL, 10);
}

uint64_t cli_get_seed(const cli_args *a, const char *name, uint64_t def) {
    const char *v = cli_get(a, name);
    return v ? cli_seed_value(v) : def;
}

double cli_get_float(const cli_args *a, const char *name, double def) {
    const char *v = cli_get(a, name);
    return v ? strtod(v, NULL) : def;
}

const char *cli_pos(const cli_args *a, int i) { return i >= 0 && i < a->n_pos ? a->pos[i] : NULL; }
