/* Tokenizer training: SentencePiece-style BPE with byte fallback (vocab.h).
 *
 * The text is read as the runtime's tokenizer sees it: each story gets the
 * dummy leading space, spaces become U+2581. It is cut into words as
 * SentencePiece's trainer does (split by whitespace and by script): a word
 * is an optional U+2581 followed by a run of letters, or of punctuation, or
 * a single digit; an apostrophe between letters stays in the word ("don't",
 * "Lily's"); line breaks and other control characters stand alone and are
 * never merged (they become <0xNN> byte tokens). Then classic BPE over the
 * distinct words weighted by their counts: repeatedly the most frequent
 * adjacent pair of symbols (ties: the smaller pair of symbol ids, i.e. the
 * earlier-seen symbols) is merged everywhere and becomes a piece with score
 * -k (k-th merge). The runtime merges, at each step, the adjacent pair whose
 * concatenation is the highest-scoring piece, which replays the merges in
 * order; since no piece spans two words (a piece never holds U+2581 after
 * its first character, nor two classes), encoding a text gives the
 * segmentation learned here, and any symbol left unmerged that is not a
 * piece falls back to its bytes: every text round-trips exactly.
 *
 * Single ASCII characters need no pieces of their own (their byte tokens
 * serve); U+2581 and frequent multi-byte characters (curly quotes, dashes)
 * get one, so that they cost one token instead of three. */
#include "vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "error.h"
#include "tokenizer.h"

/* ---- stories ------------------------------------------------------------------ */

static const char separator[] = "<|endoftext|>";

int text_for_each_story(const char *text, size_t len, story_fn fn, void *ctx) {
    const size_t k = sizeof separator - 1;
    size_t at = 0;
    while (at < len) {
        size_t end = len;
        for (size_t i = at; i + k <= len; i++)
            if (text[i] == '<' && memcmp(text + i, separator, k) == 0) {
                end = i;
                break;
            }
        size_t a = at, b = end;
        while (a < b && (text[a] == '\n' || text[a] == '\r')) a++;
        while (b > a && (text[b - 1] == '\n' || text[b - 1] == '\r')) b--;
        if (b > a) {
            int rc = fn(ctx, text + a, b - a);
            if (rc) return rc;
        }
        at = end < len ? end + k : len;
    }
    return 0;
}

/* ---- UTF-8 and character classes --------------------------------------------------- */

/* length of the valid UTF-8 sequence at s[i] and its code point, 0 if invalid */
static size_t utf8_next(const unsigned char *s, size_t n, size_t i, uint32_t *cp) {
    unsigned char c = s[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t need;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) need = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) need = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) need = 4, v = c & 0x07, min = 0x10000;
    else return 0;
    if (n - i < need) return 0;
    for (size_t k = 1; k < need; k++) {
        if ((s[i + k] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i + k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return need;
}

enum { CL_NONE = 0, CL_LETTER, CL_DIGIT, CL_PUNCT, CL_CONTROL };

static int char_class(uint32_t cp) {
    if (cp < 0x20 || cp == 0x7F) return CL_CONTROL;
    if (cp < 0x80) {
        if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z')) return CL_LETTER;
        if (cp >= '0' && cp <= '9') return CL_DIGIT;
        return CL_PUNCT;
    }
    if ((cp >= 0x80 && cp <= 0xBF) || cp == 0xD7 || cp == 0xF7 || (cp >= 0x2000 && cp <= 0x2BFF) ||
        (cp >= 0x3000 && cp <= 0x303F) || (cp >= 0xFE30 && cp <= 0xFE4F) ||
        (cp >= 0xFF00 && cp <= 0xFF0F) || cp >= 0x1F000)
        return CL_PUNCT;
    return CL_LETTER;
}

static int is_apostrophe(uint32_t cp) { return cp == '\'' || cp == 0x2019; }

/* ---- string -> index hash sets ------------------------------------------------------- */

typedef struct {
    char *arena; /* the strings, back to back */
    size_t arena_len, arena_cap;
    size_t *off;
    uint32_t *len;
    long long *count;
    int n, cap;
    int32_t *table;
    uint32_t mask;
} strset;

static uint32_t fnv(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static void strset_free(strset *s) {
    free(s->arena);
    free(s->off);
    free(s->len);
    free(s->count);
    free(s->table);
    memset(s, 0, sizeof *s);
}

static int strset_rehash(strset *s, uint32_t size) {
    int32_t *t = malloc((size_t)size * sizeof *t);
    if (!t) return -1;
    for (uint32_t i = 0; i < size; i++) t[i] = -1;
    for (int id = 0; id < s->n; id++) {
        uint32_t h = fnv(s->arena + s->off[id], s->len[id]) & (size - 1);
        while (t[h] >= 0) h = (h + 1) & (size - 1);
        t[h] = id;
    }
    free(s->table);
    s->table = t;
    s->mask = size - 1;
    return 0;
}

/* id of str (added with count 0 if new, when add); -1 when absent or out of memory */
static int strset_get(strset *s, const char *str, size_t n, int add) {
    if (!s->table && strset_rehash(s, 1024) != 0) return -1;
    uint32_t h = fnv(str, n) & s->mask;
    for (;;) {
        int32_t id = s->table[h];
        if (id < 0) break;
        if (s->len[id] == n && memcmp(s->arena + s->off[id], str, n) == 0) return id;
        h = (h + 1) & s->mask;
    }
    if (!add) return -1;
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 1024;
        size_t *no = realloc(s->off, (size_t)cap * sizeof *no);
        if (!no) return -1;
        s->off = no;
        uint32_t *nl = realloc(s->len, (size_t)cap * sizeof *nl);
        if (!nl) return -1;
        s->len = nl;
        long long *nc = realloc(s->count, (size_t)cap * sizeof *nc);
        if (!nc) return -1;
        s->count = nc;
        s->cap = cap;
    }
    if (s->arena_len + n + 1 > s->arena_cap) {
        size_t cap = s->arena_cap ? s->arena_cap * 2 : 1 << 16;
        while (cap < s->arena_len + n + 1) cap *= 2;
        char *na = realloc(s->arena, cap);
        if (!na) return -1;
        s->arena = na;
        s->arena_cap = cap;
    }
    int id = s->n++;
    memcpy(s->arena + s->arena_len, str, n);
    s->arena[s->arena_len + n] = '\0';
    s->off[id] = s->arena_len;
    s->len[id] = (uint32_t)n;
    s->count[id] = 0;
    s->arena_len += n + 1;
    s->table[h] = id;
    if ((uint32_t)s->n * 2 > s->mask + 1 && strset_rehash(s, (s->mask + 1) * 2) != 0) return -1;
    return id;
}

/* ---- words ------------------------------------------------------------------------ */

typedef struct {
    strset words;
    char *buf;
    size_t n, cap;
    int cls;  /* class of the word being built (CL_NONE: empty or only U+2581) */
    int failed;
} word_cutter;

static void word_flush(word_cutter *w) {
    if (w->n > 0) {
        int id = strset_get(&w->words, w->buf, w->n, 1);
        if (id < 0) w->failed = 1;
        else w->words.count[id]++;
    }
    w->n = 0;
    w->cls = CL_NONE;
}

static void word_put(word_cutter *w, const char *s, size_t n) {
    if (w->n + n > w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        while (cap < w->n + n) cap *= 2;
        char *nb = realloc(w->buf, cap);
        if (!nb) {
            w->failed = 1;
            return;
        }
        w->buf = nb;
        w->cap = cap;
    }
    memcpy(w->buf + w->n, s, n);
    w->n += n;
}

static const char space_piece[] = "\xE2\x96\x81"; /* U+2581 */

static int cut_story(void *ctx, const char *story, size_t n) {
    word_cutter *w = ctx;
    const unsigned char *s = (const unsigned char *)story;
    word_flush(w);
    word_put(w, space_piece, 3); /* the dummy prefix */
    uint32_t prev_cp = 0;
    for (size_t i = 0; i < n && !w->failed;) {
        uint32_t cp = 0;
        size_t l = utf8_next(s, n, i, &cp);
        if (l == 0) return 1; /* checked before: cannot happen */
        if (cp == ' ') {
            word_flush(w);
            word_put(w, space_piece, 3);
        } else {
            int cls = char_class(cp);
            if (is_apostrophe(cp) && char_class(prev_cp) == CL_LETTER && w->cls == CL_LETTER) {
                uint32_t next = 0;
                if (i + l < n && utf8_next(s, n, i + l, &next) && char_class(next) == CL_LETTER)
                    cls = CL_LETTER;
            }
            if (cls == CL_CONTROL) {
                word_flush(w); /* stands alone, never merged: not counted */
            } else {
                if (w->cls != CL_NONE && (w->cls != cls || cls == CL_DIGIT)) word_flush(w);
                word_put(w, story + i, l);
                w->cls = cls;
            }
        }
        prev_cp = cp;
        i += l;
    }
    word_flush(w);
    return w->failed ? 2 : 0;
}

/* ---- pair counts ------------------------------------------------------------------- */

typedef struct {
    uint64_t *key; /* UINT64_MAX: empty */
    long long *count;
    uint32_t *used; /* slots in use, to clear them */
    uint32_t n_used, mask;
} pairmap;

static uint32_t pair_hash(uint64_t k) { return (uint32_t)((k * 0x9E3779B97F4A7C15ull) >> 32); }

static void pair_add(pairmap *p, uint64_t k, long long c) {
    uint32_t h = pair_hash(k) & p->mask;
    while (p->key[h] != k) {
        if (p->key[h] == UINT64_MAX) {
            p->key[h] = k;
            p->count[h] = 0;
            p->used[p->n_used++] = h;
            break;
        }
        h = (h + 1) & p->mask;
    }
    p->count[h] += c;
}

/* ---- training ------------------------------------------------------------------------- */

void vocab_spec_free(vocab_spec *v) {
    if (!v) return;
    if (v->pieces)
        for (int i = 0; i < v->n; i++) free(v->pieces[i]);
    free(v->pieces);
    free(v->scores);
    free(v->types);
    memset(v, 0, sizeof *v);
}

static int add_piece(vocab_spec *v, const char *s, size_t n, float score, int type) {
    char *p = malloc(n + 1);
    if (!p) return -1;
    memcpy(p, s, n);
    p[n] = '\0';
    v->pieces[v->n] = p;
    v->scores[v->n] = score;
    v->types[v->n] = type;
    v->n++;
    return 0;
}

typedef struct {
    int sym;
    long long count;
} char_count;

static int by_count(const void *a, const void *b) {
    const char_count *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return x->sym - y->sym;
}

doze_status vocab_train(const char *text, size_t len, int size, vocab_spec *out, doze_error *err) {
    if (!out || (len > 0 && !text))
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "vocab_train: invalid arguments");
    memset(out, 0, sizeof *out);
    if (size < 3 + 256 + 1 || size > (1 << 20))
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT,
                         "vocabulary size %d: must be in [260, 2^20] (3 special and 256 byte "
                         "tokens come first)",
                         size);
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t l = utf8_next((const unsigned char *)text, len, i, &cp);
        if (l == 0) return doze_fail(err, DOZE_ERR_BAD_UTF8, "invalid UTF-8 in the text at byte %zu", i);
        i += l;
    }

    doze_status st = DOZE_OK;
    word_cutter wc;
    memset(&wc, 0, sizeof wc);
    strset syms;
    memset(&syms, 0, sizeof syms);
    int32_t *wsym = NULL;                  /* every word's symbols, back to back */
    size_t *wstart = NULL;                 /* (n_words) */
    int32_t *wlen = NULL;                  /* (n_words) current symbols per word */
    uint8_t *is_piece = NULL;              /* per symbol */
    pairmap pm;
    memset(&pm, 0, sizeof pm);
    char_count *cc = NULL;
    char *cat = NULL;

    if (text_for_each_story(text, len, cut_story, &wc) != 0 || wc.failed) {
        st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory cutting the text into words");
        goto done;
    }
    const int n_words = wc.words.n;
    size_t total = 0;
    for (int w = 0; w < n_words; w++) total += wc.words.len[w]; /* >= symbols */
    wsym = malloc((total + 1) * sizeof *wsym);
    wstart = malloc(((size_t)n_words + 1) * sizeof *wstart);
    wlen = malloc(((size_t)n_words + 1) * sizeof *wlen);
    if (!wsym || !wstart || !wlen) {
        st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for %d words", n_words);
        goto done;
    }
    /* words -> symbols (their characters), in order of first appearance */
    size_t at = 0;
    for (int w = 0; w < n_words; w++) {
        const unsigned char *s = (const unsigned char *)wc.words.arena + wc.words.off[w];
        size_t n = wc.words.len[w];
        wstart[w] = at;
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t l = utf8_next(s, n, i, &cp);
            int id = strset_get(&syms, (const char *)s + i, l, 1);
            if (id < 0) {
                st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for symbols");
                goto done;
            }
            syms.count[id] += wc.words.count[w];
            wsym[at++] = id;
            i += l;
        }
        wlen[w] = (int32_t)(at - wstart[w]);
    }
    const int n_base = syms.n;

    out->pieces = calloc((size_t)size, sizeof *out->pieces);
    out->scores = malloc((size_t)size * sizeof *out->scores);
    out->types = malloc((size_t)size * sizeof *out->types);
    if (!out->pieces || !out->scores || !out->types) {
        st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for the vocabulary");
        goto done;
    }
    int bad = add_piece(out, "<unk>", 5, 0.0f, DOZE_TOKEN_UNKNOWN);
    bad |= add_piece(out, "<s>", 3, 0.0f, DOZE_TOKEN_CONTROL);
    bad |= add_piece(out, "</s>", 4, 0.0f, DOZE_TOKEN_CONTROL);
    for (int b = 0; b < 256; b++) {
        char buf[8];
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        bad |= add_piece(out, buf, 6, 0.0f, DOZE_TOKEN_BYTE);
    }
    /* character pieces: U+2581, then multi-byte characters that make at
     * least 1 in 10^4 of the characters, most frequent first */
    long long chars = 0;
    for (int i = 0; i < n_base; i++) chars += syms.count[i];
    cc = malloc(((size_t)n_base + 1) * sizeof *cc);
    if (!cc) {
        st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    int n_cc = 0;
    for (int i = 0; i < n_base; i++) {
        int is_space = syms.len[i] == 3 && memcmp(syms.arena + syms.off[i], space_piece, 3) == 0;
        if (syms.len[i] > 1 && (is_space || (syms.count[i] >= 2 && syms.count[i] * 10000 >= chars))) {
            cc[n_cc].sym = i;
            cc[n_cc].count = is_space ? -1 : syms.count[i]; /* sorted below; U+2581 first */
            n_cc++;
        }
    }
    for (int i = 0; i < n_cc; i++)
        if (cc[i].count < 0) cc[i].count = (long long)1 << 62;
    qsort(cc, (size_t)n_cc, sizeof *cc, by_count);
    /* symbols grow by at most one per merge; their flags with them */
    is_piece = calloc((size_t)n_base + (size_t)size + 1, 1);
    if (!is_piece) {
        st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    for (int i = 0; i < n_cc && out->n < size; i++) {
        bad |= add_piece(out, syms.arena + syms.off[cc[i].sym], syms.len[cc[i].sym], 0.0f, DOZE_TOKEN_NORMAL);
        is_piece[cc[i].sym] = 1;
        out->n_chars++;
    }
    if (bad) {
        st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for the vocabulary");
        goto done;
    }

    /* pair map sized for every adjacent pair there can be */
    uint32_t pm_size = 1024;
    while (pm_size < 2 * (total + 1) && pm_size < (1u << 31)) pm_size *= 2;
    pm.key = malloc((size_t)pm_size * sizeof *pm.key);
    pm.count = malloc((size_t)pm_size * sizeof *pm.count);
    pm.used = malloc((size_t)pm_size * sizeof *pm.used);
    if (!pm.key || !pm.count || !pm.used) {
        st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for pair counts");
        goto done;
    }
    pm.mask = pm_size - 1;
    for (uint32_t i = 0; i < pm_size; i++) pm.key[i] = UINT64_MAX;

    size_t cat_cap = 256;
    cat = malloc(cat_cap);
    if (!cat) {
        st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    while (out->n < size) {
        for (uint32_t i = 0; i < pm.n_used; i++) pm.key[pm.used[i]] = UINT64_MAX;
        pm.n_used = 0;
        for (int w = 0; w < n_words; w++) {
            const int32_t *s = wsym + wstart[w];
            long long c = wc.words.count[w];
            for (int i = 0; i + 1 < wlen[w]; i++)
                pair_add(&pm, ((uint64_t)(uint32_t)s[i] << 32) | (uint32_t)s[i + 1], c);
        }
        uint64_t best = UINT64_MAX;
        long long best_c = 0;
        for (uint32_t i = 0; i < pm.n_used; i++) {
            uint32_t h = pm.used[i];
            if (pm.count[h] > best_c || (pm.count[h] == best_c && pm.key[h] < best)) {
                best_c = pm.count[h];
                best = pm.key[h];
            }
        }
        if (best_c < 2) break; /* nothing left worth a piece */
        int a = (int)(best >> 32), b = (int)(best & 0xFFFFFFFFu);
        size_t la = syms.len[a], lb = syms.len[b];
        if (la + lb > cat_cap) {
            cat_cap = 2 * (la + lb);
            char *nc = realloc(cat, cat_cap);
            if (!nc) {
                st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory");
                goto done;
            }
            cat = nc;
        }
        memcpy(cat, syms.arena + syms.off[a], la);
        memcpy(cat + la, syms.arena + syms.off[b], lb);
        /* arena may move: a and b are not used as pointers below */
        int merged = strset_get(&syms, cat, la + lb, 1);
        if (merged < 0 || merged >= n_base + size) {
            st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for symbols");
            goto done;
        }
        if (!is_piece[merged]) {
            /* a piece only if it can exist in the runtime's merging: always
             * true here (concatenations of pieces-or-characters) */
            if (add_piece(out, cat, la + lb, -(float)out->n_merges, DOZE_TOKEN_NORMAL) != 0) {
                st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for the vocabulary");
                goto done;
            }
            is_piece[merged] = 1;
            out->n_merges++;
        }
        for (int w = 0; w < n_words; w++) {
            int32_t *s = wsym + wstart[w];
            int n = wlen[w], o = 0;
            for (int i = 0; i < n; i++) {
                if (i + 1 < n && s[i] == a && s[i + 1] == b) {
                    s[o++] = merged;
                    i++;
                } else {
                    s[o++] = s[i];
                }
            }
            wlen[w] = o;
        }
    }
    out->words = n_words;

done:
    if (st != DOZE_OK) vocab_spec_free(out);
    strset_free(&wc.words);
    free(wc.buf);
    strset_free(&syms);
    free(wsym);
    free(wstart);
    free(wlen);
    free(is_piece);
    free(pm.key);
    free(pm.count);
    free(pm.used);
    free(cc);
    free(cat);
    return st;
}

/* ---- files ---------------------------------------------------------------------------- */

doze_status vocab_write(const vocab_spec *v, gguf_write_fn fn, void *ctx, doze_error *err) {
    gguf_builder b;
    doze_status st = gguf_builder_init(&b, err);
    if (st != DOZE_OK) return st;
    if ((st = gguf_writer_set_str(b.w, "general.architecture", "llama", err)) == DOZE_OK &&
        (st = gguf_writer_set_str(b.w, "general.name", "doze-vocab", err)) == DOZE_OK &&
        (st = gguf_builder_set_tokenizer(&b, v->n, (const char *const *)v->pieces, v->scores,
                                         v->types, 1, 2, 0, err)) == DOZE_OK)
        st = gguf_writer_write(b.w, fn, ctx, err);
    gguf_builder_free(&b);
    return st;
}

doze_status vocab_copy_kvs(gguf_writer *w, const gguf_header *h, doze_error *err) {
    for (uint64_t i = 0; i < h->n_kv; i++) {
        const gguf_kv *kv = &h->kv[i];
        if (kv->key.len > 10 && memcmp(kv->key.data, "tokenizer.", 10) == 0) {
            doze_status st = gguf_writer_set(w, kv->key.data, &kv->value, err);
            if (st != DOZE_OK) return st;
        }
    }
    return DOZE_OK;
}

/* ---- public ------------------------------------------------------------------------------ */

doze_status doze_vocab_train(const char *text, size_t len, int size,
                             int (*fn)(void *ctx, const void *bytes, size_t n), void *ctx,
                             doze_error *err) {
    if (!fn) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "doze_vocab_train: no output");
    vocab_spec v;
    doze_status st = vocab_train(text, len, size, &v, err);
    if (st != DOZE_OK) return st;
    st = vocab_write(&v, fn, ctx, err);
    vocab_spec_free(&v);
    return st;
}
