/* Byte-level BPE (GGUF tokenizer.ggml.model = "gpt2"), as llama.cpp runs it.
 *
 * The text is split into words by the pre-tokenizer (pretokenize.c). Each
 * word's bytes are mapped to code points by GPT-2's byte-to-unicode table
 * (printable bytes stand for themselves, the rest become U+0100 onwards) and
 * the word is split into those code points; then the adjacent pair with the
 * lowest merge rank (tokenizer.ggml.merges, "left right") is merged, ties to
 * the leftmost, until no pair is a merge. Each final symbol is a token; one
 * that is not (possible with odd vocabularies) is written as the tokens of
 * its single bytes where those exist and dropped otherwise, as llama.cpp
 * does. Pre-tokenizers that say so (Llama 3's) take a word that is already a
 * token as it is, without merging.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer_impl.h"
#include "unicode.h"

void bpe_free(doze_tokenizer *t) {
    free(t->merge_text);
    free(t->merge_offset);
    free(t->merge_len);
    free(t->merge_split);
    free(t->merge_table);
    t->merge_text = NULL;
    t->merge_offset = NULL;
    t->merge_len = NULL;
    t->merge_split = NULL;
    t->merge_table = NULL;
}

static uint32_t pair_hash(const char *l, size_t ln, const char *r, size_t rn) {
    uint32_t h = tok_hash(2166136261u, l, ln);
    h = tok_hash(h, " ", 1);
    return tok_hash(h, r, rn);
}

/* Rank of the merge (l, r), or -1. */
static int merge_rank(const doze_tokenizer *t, const char *l, size_t ln, const char *r,
                      size_t rn) {
    if (!t->merge_table) return -1;
    uint32_t i = pair_hash(l, ln, r, rn) & t->merge_mask;
    for (;;) {
        int32_t k = t->merge_table[i];
        if (k < 0) return -1;
        const char *m = t->merge_text + t->merge_offset[k];
        if (t->merge_split[k] == ln && t->merge_len[k] == ln + 1 + rn && memcmp(m, l, ln) == 0 &&
            memcmp(m + ln + 1, r, rn) == 0)
            return k;
        i = (i + 1) & t->merge_mask;
    }
}

/* GPT-2's byte-to-unicode table */
static void init_byte_map(doze_tokenizer *t) {
    int next = 256;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        uint32_t cp = printable ? (uint32_t)b : (uint32_t)next++;
        t->byte_enc_len[b] = (uint8_t)unicode_encode(cp, t->byte_enc[b]);
    }
}

doze_status bpe_init(doze_tokenizer *t, const gguf_header *h, doze_error *err) {
    init_byte_map(t);

    /* the pre-tokenizer: llama.cpp's default when the key is absent */
    const gguf_string *pre = NULL;
    doze_status st = gguf_get_string(h, "tokenizer.ggml.pre", &pre, err);
    if (st == DOZE_ERR_MISSING) {
        doze_error_clear(err);
        t->pre.type = PRETOK_DEFAULT;
    } else if (st != DOZE_OK) {
        return st;
    } else if (pretok_lookup(pre->data, (size_t)pre->len, &t->pre) != 0) {
        return doze_fail(err, DOZE_ERR_UNSUPPORTED_TYPE,
                         "pre-tokenizer '%.*s' (tokenizer.ggml.pre) is not supported",
                         (int)(pre->len > 64 ? 64 : pre->len), pre->data ? pre->data : "");
    }

    uint32_t type = 0;
    uint64_t n = 0;
    const void *data = NULL;
    st = gguf_get_array(h, "tokenizer.ggml.merges", GGUF_TYPE_STRING, &type, &n, &data, err);
    if (st == DOZE_ERR_MISSING)
        return doze_fail(err, DOZE_ERR_MISSING,
                         "byte-level BPE vocabulary without tokenizer.ggml.merges");
    if (st != DOZE_OK) return st;
    if (n > (uint64_t)INT32_MAX / 4)
        return doze_fail(err, DOZE_ERR_BAD_FORMAT, "tokenizer.ggml.merges has too many entries");
    const gguf_string *merges = data;
    uint64_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (merges[i].len > UINT32_MAX - 1 || (merges[i].len > 0 && !merges[i].data))
            return doze_fail(err, DOZE_ERR_BAD_FORMAT, "merge %llu is unusable",
                             (unsigned long long)i);
        total += merges[i].len + 1;
        if (total > (uint64_t)SIZE_MAX / 2)
            return doze_fail(err, DOZE_ERR_BAD_FORMAT, "tokenizer.ggml.merges is too large");
    }
    int nm = (int)n;
    uint32_t size = 16;
    while (size < 2u * (uint32_t)nm + 2) size *= 2;
    t->n_merges = nm;
    t->merge_text = malloc(total ? (size_t)total : 1);
    t->merge_offset = malloc(((size_t)nm + 1) * sizeof *t->merge_offset);
    t->merge_len = malloc(((size_t)nm + 1) * sizeof *t->merge_len);
    t->merge_split = malloc(((size_t)nm + 1) * sizeof *t->merge_split);
    t->merge_table = malloc((size_t)size * sizeof *t->merge_table);
    if (!t->merge_text || !t->merge_offset || !t->merge_len || !t->merge_split || !t->merge_table)
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for %d merges", nm);
    t->merge_mask = size - 1;
    for (uint32_t i = 0; i < size; i++) t->merge_table[i] = -1;
    size_t off = 0;
    for (int k = 0; k < nm; k++) {
        const gguf_string *m = &merges[k];
        t->merge_offset[k] = off;
        t->merge_len[k] = (uint32_t)m->len;
        if (m->len) memcpy(t->merge_text + off, m->data, (size_t)m->len);
        t->merge_text[off + m->len] = '\0';
        off += (size_t)m->len + 1;
        /* split at the first space after the first byte (as llama.cpp);
         * a merge without one never applies */
        const char *s = t->merge_text + t->merge_offset[k];
        const char *sp = m->len > 1 ? memchr(s + 1, ' ', (size_t)m->len - 1) : NULL;
        if (!sp) {
            t->merge_split[k] = UINT32_MAX;
            continue;
        }
        size_t ln = (size_t)(sp - s), rn = (size_t)m->len - ln - 1;
        t->merge_split[k] = (uint32_t)ln;
        /* the first of duplicate merges keeps its rank */
        if (merge_rank(t, s, ln, sp + 1, rn) >= 0) continue;
        uint32_t i = pair_hash(s, ln, sp + 1, rn) & t->merge_mask;
        while (t->merge_table[i] >= 0) i = (i + 1) & t->merge_mask;
        t->merge_table[i] = k;
    }
    return DOZE_OK;
}

/* ---- merging one word ------------------------------------------------------------ */

typedef struct {
    int32_t start, n; /* bytes in the encoded word; n = 0 once merged away */
    int32_t prev, next;
} bsym;

typedef struct {
    int32_t rank, left, right, size;
} bpair;

typedef struct {
    bpair *items;
    size_t n;
} bheap;

static int bpair_before(const bpair *a, const bpair *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void bheap_push(bheap *hp, bpair p) {
    size_t i = hp->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bpair_before(&p, &hp->items[parent])) break;
        hp->items[i] = hp->items[parent];
        i = parent;
    }
    hp->items[i] = p;
}

static bpair bheap_pop(bheap *hp) {
    bpair top = hp->items[0], last = hp->items[--hp->n];
    size_t i = 0, n = hp->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bpair_before(&hp->items[c + 1], &hp->items[c])) c++;
        if (!bpair_before(&hp->items[c], &last)) break;
        hp->items[i] = hp->items[c];
        i = c;
    }
    if (n > 0) hp->items[i] = last;
    return top;
}

static void add_pair(const doze_tokenizer *t, const char *w, const bsym *s, bheap *hp, int l,
                     int r) {
    if (l < 0 || r < 0) return;
    int rank = merge_rank(t, w + s[l].start, (size_t)s[l].n, w + s[r].start, (size_t)s[r].n);
    if (rank < 0) return;
    bpair p = {rank, l, r, s[l].n + s[r].n};
    bheap_push(hp, p);
}

/* Encodes one byte-mapped word w[0..n). syms and heap have room for n
 * symbols and 3n pairs. */
static void bpe_word(const doze_tokenizer *t, const char *w, size_t n, bsym *syms, bheap *hp,
                     tok_emitter *e) {
    if (t->pre.ignore_merges) {
        int id = tok_lookup(t, w, n);
        if (id >= 0) {
            tok_emit(e, id);
            return;
        }
    }
    int ns = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)w[i];
        size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (l > n - i) l = n - i;
        syms[ns].start = (int32_t)i;
        syms[ns].n = (int32_t)l;
        syms[ns].prev = ns - 1;
        i += l;
        syms[ns].next = i >= n ? -1 : ns + 1;
        ns++;
    }
    hp->n = 0;
    for (int i = 1; i < ns; i++) add_pair(t, w, syms, hp, i - 1, i);
    while (hp->n > 0) {
        bpair p = bheap_pop(hp);
        bsym *l = &syms[p.left], *r = &syms[p.right];
        /* stale: a side merged away or grown since it was queued */
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.size || l->next != p.right) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) syms[r->next].prev = p.left;
        add_pair(t, w, syms, hp, l->prev, p.left);
        add_pair(t, w, syms, hp, p.left, l->next);
    }
    for (int i = 0; i != -1; i = syms[i].next) {
        int id = tok_lookup(t, w + syms[i].start, (size_t)syms[i].n);
        if (id >= 0) {
            tok_emit(e, id);
            continue;
        }
        for (int32_t j = 0; j < syms[i].n; j++) {
            int b = tok_lookup(t, w + syms[i].start + j, 1);
            if (b >= 0) tok_emit(e, b);
        }
    }
}

doze_status bpe_encode_fragment(const doze_tokenizer *t, const char *text, size_t len,
                                tok_emitter *e, doze_error *err) {
    if (len == 0) return DOZE_OK;
    /* code points, flags, word ends, scratch: at most len of each; the
     * byte-mapped word: at most 2 bytes per byte */
    uint32_t *cps = malloc(len * sizeof *cps);
    uint16_t *flags = malloc(len * sizeof *flags);
    uint32_t *ends = malloc(len * sizeof *ends);
    uint32_t *tmp = malloc(len * sizeof *tmp);
    char *word = malloc(2 * len);
    bsym *syms = malloc(2 * len * sizeof *syms);
    bheap hp = {malloc(6 * len * sizeof(bpair)), 0};
    doze_status st = DOZE_OK;
    if (!cps || !flags || !ends || !tmp || !word || !syms || !hp.items) {
        st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory tokenizing %zu bytes", len);
        goto done;
    }
    size_t n = unicode_decode(text, len, cps);
    size_t n_words = pretokenize(t->pre.type, cps, n, flags, ends, tmp);
    /* byte offsets of code points: walk the text alongside */
    size_t byte = 0, cp = 0;
    for (size_t k = 0; k < n_words; k++) {
        size_t b0 = byte;
        for (; cp < ends[k]; cp++) {
            unsigned char c = (unsigned char)text[byte];
            byte += c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        }
        if (byte > len) byte = len;
        size_t wn = 0;
        for (size_t i = b0; i < byte; i++) {
            unsigned char c = (unsigned char)text[i];
            memcpy(word + wn, t->byte_enc[c], t->byte_enc_len[c]);
            wn += t->byte_enc_len[c];
        }
        bpe_word(t, word, wn, syms, &hp, e);
    }
done:
    free(cps);
    free(flags);
    free(ends);
    free(tmp);
    free(word);
    free(syms);
    free(hp.items);
    return st;
}

size_t bpe_decode_piece(const doze_tokenizer *t, const char *p, size_t n, char *buf, size_t cap) {
    size_t out = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)p[i];
        size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (l > n - i) l = n - i;
        int byte = -1;
        /* the code points of the table are below U+0144: one or two bytes */
        if (l <= 2)
            for (int b = 0; b < 256 && byte < 0; b++)
                if (t->byte_enc_len[b] == l && memcmp(t->byte_enc[b], p + i, l) == 0) byte = b;
        if (byte >= 0) {
            if (out < cap) buf[out] = (char)byte;
            out++;
        } else {
            /* not a byte's code point: its own UTF-8 */
            for (size_t j = 0; j < l; j++, out++)
                if (out < cap) buf[out] = p[i + j];
        }
        i += l;
    }
    return out;
}
