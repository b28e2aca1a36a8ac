/* SentencePiece-style BPE tokenizer (GGUF tokenizer.ggml.model = "llama").
 *
 * Encoding follows llama.cpp's SPM tokenizer: the text (with a dummy leading
 * space when add_space_prefix is set) has its spaces replaced by U+2581, is
 * split into UTF-8 characters, and adjacent symbols are merged greedily: at
 * each step the adjacent pair whose concatenation is a vocabulary piece with
 * the highest score (ties: the leftmost pair) is merged. A doubly linked list
 * of symbols plus a binary max-heap of candidate pairs (with lazy deletion of
 * stale entries) makes this O(n log n). Final symbols that are not pieces are
 * written as their bytes through the <0xNN> tokens.
 *
 * llama.cpp additionally "resegments" a final symbol that is not a token by
 * splitting it back along the merge that created it. Since a pair is only
 * ever merged when its concatenation IS a token, every merged symbol is a
 * token and only unmerged single characters can miss the vocabulary; for
 * those llama.cpp's rev_merge lookup finds nothing and it falls back to
 * bytes. Resegmenting therefore reduces to "token, or its bytes", which is
 * what emit_symbol() does.
 */
#include "tokenizer.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#include "tokenizer_impl.h"
#include "unicode.h"

/* ---- helpers ------------------------------------------------------------------- */

/* malloc(n * size) with overflow check; NULL on failure (or overflow). */
static void *alloc_array(size_t n, size_t size) {
    if (size != 0 && n > SIZE_MAX / size) return NULL;
    size_t bytes = n * size;
    return malloc(bytes ? bytes : 1);
}

static uint32_t hash_bytes(const char *s, size_t n) { return tok_hash(2166136261u, s, n); }

int tok_lookup(const doze_tokenizer *t, const char *s, size_t n) {
    uint32_t i = hash_bytes(s, n) & t->table_mask;
    for (;;) {
        int32_t id = t->table[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->text + t->offset[id], s, n) == 0) return id;
        i = (i + 1) & t->table_mask;
    }
}

/* Inserts id; a later duplicate piece replaces the earlier one (as
 * llama.cpp's token_to_id map does). */
static void table_insert(doze_tokenizer *t, int id) {
    const char *s = t->text + t->offset[id];
    size_t n = t->len[id];
    uint32_t i = hash_bytes(s, n) & t->table_mask;
    for (;;) {
        int32_t cur = t->table[i];
        if (cur < 0) {
            t->table[i] = id;
            return;
        }
        if (t->len[cur] == n && memcmp(t->text + t->offset[cur], s, n) == 0) {
            t->table[i] = id;
            return;
        }
        i = (i + 1) & t->table_mask;
    }
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The byte of a "<0xNN>" piece, or -1. */
static int parse_byte_piece(const char *s, size_t n) {
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    int a = hex_digit(s[3]), b = hex_digit(s[4]);
    if (a < 0 || b < 0) return -1;
    return a * 16 + b;
}

/* ---- construction ---------------------------------------------------------------- */

void tokenizer_free(doze_tokenizer *t) {
    if (!t) return;
    free(t->text);
    free(t->offset);
    free(t->len);
    free(t->score);
    free(t->type);
    free(t->attr);
    free(t->byte_value);
    free(t->table);
    free(t->eog);
    free(t->special);
    bpe_free(t);
    free(t);
}

/* Optional special-token id: *out (-1 or what an earlier key gave) is kept
 * when the key is absent or out of range (as llama.cpp, which warns and goes
 * on: published files carry e.g. an unknown_token_id of -1 or 2^32 - 1 for
 * "none"). */
static doze_status get_special_id(const gguf_header *h, const char *key, int n_vocab, int *out,
                                  doze_error *err) {
    int64_t v = -1;
    doze_status st = gguf_get_int(h, key, &v, err);
    if (st == DOZE_ERR_MISSING) {
        doze_error_clear(err);
        return DOZE_OK;
    }
    if (st != DOZE_OK) return st;
    if (v >= 0 && v < n_vocab) *out = (int)v;
    return DOZE_OK;
}

/* Optional integer or bool key: *out keeps its default when absent. */
static doze_status get_optional_int(const gguf_header *h, const char *key, int64_t *out,
                                    doze_error *err) {
    doze_status st = gguf_get_int(h, key, out, err);
    if (st == DOZE_ERR_MISSING) {
        doze_error_clear(err);
        return DOZE_OK;
    }
    return st;
}

/* Optional array: *data = NULL when absent; BAD_FORMAT when its length is not n. */
static doze_status get_optional_array(const gguf_header *h, const char *key, int want_type,
                                      uint64_t n, const void **data, doze_error *err) {
    uint32_t type = 0;
    uint64_t count = 0;
    *data = NULL;
    doze_status st = gguf_get_array(h, key, want_type, &type, &count, data, err);
    if (st == DOZE_ERR_MISSING) {
        doze_error_clear(err);
        *data = NULL;
        return DOZE_OK;
    }
    if (st != DOZE_OK) {
        *data = NULL;
        return st;
    }
    if (count != n) {
        *data = NULL;
        return doze_fail(err, DOZE_ERR_BAD_FORMAT,
                         "%s has %llu entries but tokenizer.ggml.tokens has %llu", key,
                         (unsigned long long)count, (unsigned long long)n);
    }
    return DOZE_OK;
}

static int piece_is(const doze_tokenizer *t, int id, const char *s) {
    size_t n = strlen(s);
    return t->len[id] == n && memcmp(t->text + t->offset[id], s, n) == 0;
}

/* The first token (by id) whose piece is one of names, or -1. */
static int find_by_text(const doze_tokenizer *t, const char *const *names, size_t n_names) {
    for (int i = 0; i < t->n_vocab; i++)
        for (size_t k = 0; k < n_names; k++)
            if (piece_is(t, i, names[k])) return i;
    return -1;
}

/* The tokens that end generation, by llama.cpp's rule: the EOS, EOT and EOM
 * ids, the FIM pad/repo/file-separator tokens, and every token whose text is
 * one of the usual end-of-turn markers. Those marker tokens count as control
 * tokens whatever their type says (llama.cpp overrides the type). */
static void find_eog(doze_tokenizer *t, int fim_pad, int fim_rep, int fim_sep, const int fim[3]) {
    static const char *const eot_names[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
        "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of"
        "\xE2\x96\x81" "sentence\xEF\xBD\x9C>", "<end_of_utterance>"};
    static const char *const eog_names[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
        "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]",
        "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
        "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>", "[e~["};
    static const char *const pad_names[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>",
                                            "[PAD]"};
    static const char *const rep_names[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
                                            "<REPO>", "<reponame>"};
    static const char *const sep_names[] = {"<|file_sep|>"};
    static const char *const eom_names[] = {"<|eom_id|>"};
    /* the fill-in-the-middle markers: not end-of-generation, but control
     * tokens (so never matched in user text) even where a file types them
     * user-defined, as deepseek-coder's does */
    static const char *const fim_names[3][8] = {
        {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>",
         "<PRE>", "\xE2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>"},
        {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "hole\xEF\xBD\x9C>",
         "<SUF>", "\xE2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>"},
        {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>",
         "<MID>", "\xE2\x96\x81<MID>", "<|code_middle|>", "<|middle|>"}};
#define NAMES(a) a, sizeof(a) / sizeof(a[0])
    if (t->eot < 0) t->eot = find_by_text(t, NAMES(eot_names));
    if (t->eom < 0) t->eom = find_by_text(t, NAMES(eom_names));
    if (fim_pad < 0) fim_pad = find_by_text(t, NAMES(pad_names));
    if (fim_rep < 0) fim_rep = find_by_text(t, NAMES(rep_names));
    if (fim_sep < 0) fim_sep = find_by_text(t, NAMES(sep_names));
    /* llama.cpp makes a FIM marker control only when it found it by its text
     * (an id given by the file's key is taken as typed) */
    for (int k = 0; k < 3; k++) {
        if (fim[k] >= 0) continue;
        int id = find_by_text(t, fim_names[k], sizeof fim_names[k] / sizeof fim_names[k][0]);
        if (id >= 0) t->attr[id] |= TOK_ATTR_CONTROL;
    }
    int ids[] = {t->eot, t->eom, fim_pad, fim_rep, fim_sep};
    for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++) {
        if (ids[k] < 0) continue;
        t->attr[ids[k]] |= TOK_ATTR_CONTROL;
        t->eog[ids[k]] = 1;
    }
    for (int i = 0; i < t->n_vocab; i++)
        for (size_t k = 0; k < sizeof eog_names / sizeof eog_names[0]; k++)
            if (piece_is(t, i, eog_names[k])) {
                t->eog[i] = 1;
                t->attr[i] |= TOK_ATTR_CONTROL;
            }
#undef NAMES
    if (t->eos >= 0) t->eog[t->eos] = 1;
}

/* Special tokens matched in the text before the model's own algorithm
 * (control, user-defined and unknown tokens), longest first (ties by id). */
static int special_cmp_len(const doze_tokenizer *t, int32_t a, int32_t b) {
    if (t->len[a] != t->len[b]) return t->len[a] > t->len[b] ? -1 : 1;
    return a < b ? -1 : a > b;
}
static void sort_specials(doze_tokenizer *t) {
    /* insertion sort: vocabularies carry at most a few thousand specials */
    for (int i = 1; i < t->n_special; i++) {
        int32_t x = t->special[i];
        int j = i - 1;
        while (j >= 0 && special_cmp_len(t, t->special[j], x) > 0) {
            t->special[j + 1] = t->special[j];
            j--;
        }
        t->special[j + 1] = x;
    }
}

static uint16_t attr_of_type(int32_t type) {
    switch (type) {
    case DOZE_TOKEN_NORMAL: return TOK_ATTR_NORMAL;
    case DOZE_TOKEN_UNKNOWN: return TOK_ATTR_UNKNOWN;
    case DOZE_TOKEN_CONTROL: return TOK_ATTR_CONTROL;
    case DOZE_TOKEN_USER_DEFINED: return TOK_ATTR_USER_DEFINED;
    case DOZE_TOKEN_UNUSED: return TOK_ATTR_UNUSED;
    case DOZE_TOKEN_BYTE: return TOK_ATTR_BYTE;
    default: return 0;
    }
}

doze_status tokenizer_from_gguf(const gguf_header *h, doze_tokenizer **out, doze_error *err) {
    if (!out) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "tokenizer_from_gguf: out is NULL");
    *out = NULL;
    if (!h) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "tokenizer_from_gguf: header is NULL");

    const gguf_string *model = NULL;
    doze_status st = gguf_get_string(h, "tokenizer.ggml.model", &model, err);
    if (st == DOZE_ERR_MISSING)
        return doze_fail(err, DOZE_ERR_MISSING, "no tokenizer: tokenizer.ggml.model is absent");
    if (st != DOZE_OK) return st;
    int kind;
    if (model->len == 5 && memcmp(model->data, "llama", 5) == 0) {
        kind = TOK_KIND_SPM;
    } else if (model->len == 4 && memcmp(model->data, "gpt2", 4) == 0) {
        kind = TOK_KIND_BPE;
    } else {
        return doze_fail(err, DOZE_ERR_UNSUPPORTED_TYPE,
                         "tokenizer model '%.*s' is not supported (only 'llama' and 'gpt2')",
                         (int)(model->len > 64 ? 64 : model->len), model->data);
    }

    uint32_t tokens_type = 0;
    uint64_t n = 0;
    const void *tokens_data = NULL;
    st = gguf_get_array(h, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, &tokens_type, &n,
                        &tokens_data, err);
    if (st != DOZE_OK) return st;
    if (n == 0) return doze_fail(err, DOZE_ERR_BAD_FORMAT, "tokenizer.ggml.tokens is empty");
    if (n > (uint64_t)INT32_MAX / 4)
        return doze_fail(err, DOZE_ERR_BAD_FORMAT, "tokenizer.ggml.tokens has too many entries (%llu)",
                         (unsigned long long)n);
    const gguf_string *pieces = (const gguf_string *)tokens_data;
    int n_vocab = (int)n;

    const void *scores_data = NULL, *types_data = NULL;
    st = get_optional_array(h, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, n, &scores_data, err);
    if (st != DOZE_OK) return st;
    /* i32 as gguf-py writes it; u32 as some converters do (the same bits
     * for the small type codes) */
    const gguf_kv *types_kv = gguf_find_kv(h, "tokenizer.ggml.token_type");
    const int types_u32 = types_kv && types_kv->value.type == GGUF_TYPE_ARRAY &&
                          types_kv->value.v.arr.type == GGUF_TYPE_UINT32;
    st = get_optional_array(h, "tokenizer.ggml.token_type", types_u32 ? GGUF_TYPE_UINT32 : GGUF_TYPE_INT32, n,
                            &types_data, err);
    if (st != DOZE_OK) return st;
    const float *scores = (const float *)scores_data;
    const int32_t *types = (const int32_t *)types_data;

    int bos = -1, eos = -1, unk = -1, eot = -1, eom = -1, fim_pad = -1, fim_rep = -1, fim_sep = -1;
    int fim[3] = {-1, -1, -1}; /* prefix, suffix, middle */
    /* the deprecated prefix/suffix/middle keys come after the fim_* ones and
     * win where both are present, as in llama.cpp */
    static const char *const id_keys[] = {
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id", "tokenizer.ggml.fim_pad_token_id",
        "tokenizer.ggml.fim_rep_token_id", "tokenizer.ggml.fim_sep_token_id",
        "tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.fim_suf_token_id",
        "tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.prefix_token_id",
        "tokenizer.ggml.suffix_token_id", "tokenizer.ggml.middle_token_id"};
    int *id_out[] = {&bos, &eos, &unk, &eot, &eom, &fim_pad, &fim_rep, &fim_sep,
                     &fim[0], &fim[1], &fim[2], &fim[0], &fim[1], &fim[2]};
    for (size_t k = 0; k < sizeof id_keys / sizeof id_keys[0]; k++)
        if ((st = get_special_id(h, id_keys[k], n_vocab, id_out[k], err)) != DOZE_OK) return st;

    int64_t add_space = kind == TOK_KIND_SPM;
    if ((st = get_optional_int(h, "tokenizer.ggml.add_space_prefix", &add_space, err)) != DOZE_OK)
        return st;

    /* validate the pieces and size the text buffer */
    uint64_t total = 0;
    for (int i = 0; i < n_vocab; i++) {
        const gguf_string *p = &pieces[i];
        if (p->len > UINT32_MAX - 1 || (p->len > 0 && !p->data))
            return doze_fail(err, DOZE_ERR_BAD_FORMAT, "token %d has an unusable piece", i);
        int type = types ? types[i] : DOZE_TOKEN_NORMAL;
        /* decode gives at most DOZE_MAX_PIECE bytes (callers size buffers by
         * it): U+2581 decodes to one byte, a byte-level BPE code point to at
         * most its own bytes, everything else to itself */
        uint64_t decoded = 0;
        for (uint64_t j = 0; j < p->len && decoded <= DOZE_MAX_PIECE; decoded++)
            j += (p->len - j >= 3 && memcmp(p->data + j, "\xE2\x96\x81", 3) == 0) ? 3 : 1;
        if (kind == TOK_KIND_SPM && decoded > DOZE_MAX_PIECE)
            return doze_fail(err, DOZE_ERR_BAD_FORMAT,
                             "token %d: piece of %llu bytes decodes to more than %d bytes", i,
                             (unsigned long long)p->len, DOZE_MAX_PIECE);
        if (type != DOZE_TOKEN_BYTE) {
            size_t bad = unicode_utf8_first_invalid((const unsigned char *)p->data, (size_t)p->len);
            if (bad != SIZE_MAX)
                return doze_fail(err, DOZE_ERR_BAD_UTF8,
                                 "token %d: piece is not valid UTF-8 (byte %zu)", i, bad);
        }
        total += p->len + 1;
        if (total > (uint64_t)SIZE_MAX / 2)
            return doze_fail(err, DOZE_ERR_BAD_FORMAT, "tokenizer pieces are too large");
    }

    doze_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for the tokenizer");
    uint32_t table_size = 16;
    while (table_size < 2u * (uint32_t)n_vocab) table_size *= 2;
    t->kind = kind;
    t->n_vocab = n_vocab;
    t->text = alloc_array((size_t)total, 1);
    t->offset = alloc_array((size_t)n_vocab, sizeof *t->offset);
    t->len = alloc_array((size_t)n_vocab, sizeof *t->len);
    t->score = alloc_array((size_t)n_vocab, sizeof *t->score);
    t->type = alloc_array((size_t)n_vocab, sizeof *t->type);
    t->attr = alloc_array((size_t)n_vocab, sizeof *t->attr);
    t->byte_value = alloc_array((size_t)n_vocab, sizeof *t->byte_value);
    t->table = alloc_array(table_size, sizeof *t->table);
    t->eog = calloc((size_t)n_vocab, 1);
    t->special = alloc_array((size_t)n_vocab, sizeof *t->special);
    if (!t->text || !t->offset || !t->len || !t->score || !t->type || !t->attr ||
        !t->byte_value || !t->table || !t->eog || !t->special) {
        tokenizer_free(t);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for a %d-token vocabulary",
                         n_vocab);
    }
    t->table_mask = table_size - 1;
    t->bos = bos;
    t->eos = eos;
    t->unk = unk;
    t->eot = eot;
    t->eom = eom;
    t->add_space_prefix = add_space != 0;

    if (kind == TOK_KIND_BPE && (st = bpe_init(t, h, err)) != DOZE_OK) {
        tokenizer_free(t);
        return st;
    }
    int64_t add_bos = kind == TOK_KIND_SPM ? 1 : t->pre.add_bos, add_eos = 0;
    if ((st = get_optional_int(h, "tokenizer.ggml.add_bos_token", &add_bos, err)) != DOZE_OK ||
        (st = get_optional_int(h, "tokenizer.ggml.add_eos_token", &add_eos, err)) != DOZE_OK) {
        tokenizer_free(t);
        return st;
    }
    t->add_bos = add_bos != 0;
    t->add_eos = add_eos != 0;

    size_t off = 0;
    for (int i = 0; i < n_vocab; i++) {
        const gguf_string *p = &pieces[i];
        t->offset[i] = off;
        t->len[i] = (uint32_t)p->len;
        if (p->len) memcpy(t->text + off, p->data, (size_t)p->len);
        t->text[off + p->len] = '\0';
        off += (size_t)p->len + 1;
        t->score[i] = scores ? scores[i] : 0.0f;
        t->type[i] = types ? types[i] : DOZE_TOKEN_NORMAL;
        t->attr[i] = attr_of_type(t->type[i]);
        t->byte_value[i] = (int16_t)(t->type[i] == DOZE_TOKEN_BYTE
                                         ? parse_byte_piece(t->text + t->offset[i], t->len[i])
                                         : -1);
    }
    for (uint32_t i = 0; i < table_size; i++) t->table[i] = -1;
    for (int i = 0; i < n_vocab; i++) table_insert(t, i);

    find_eog(t, fim_pad, fim_rep, fim_sep, fim);

    /* Phi-3's files: llama.cpp strips the white space after its special
     * tokens (the model was trained that way), chosen by the model's name */
    const gguf_string *name = NULL;
    int phi3 = 0;
    if (gguf_get_string(h, "general.name", &name, err) == DOZE_OK) {
        char low[64];
        size_t nl = name->len < sizeof low - 1 ? (size_t)name->len : sizeof low - 1;
        for (size_t i = 0; i < nl; i++) {
            char c = name->data[i];
            low[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        }
        low[nl] = '\0';
        phi3 = strstr(low, "phi-3") || strstr(low, "phi3");
    }
    doze_error_clear(err);

    for (int i = 0; i < n_vocab; i++)
        if ((t->attr[i] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN)) &&
            t->len[i] > 0)
            t->special[t->n_special++] = i;
    sort_specials(t);
    if (phi3) {
        for (int k = 0; k < t->n_special; k++) t->attr[t->special[k]] |= TOK_ATTR_RSTRIP;
        for (int i = 0; i < n_vocab; i++) {
            if (piece_is(t, i, "</s>")) t->attr[i] |= TOK_ATTR_RSTRIP;
            if (piece_is(t, i, "<unk>") || piece_is(t, i, "<s>") || piece_is(t, i, "<|endoftext|>"))
                t->attr[i] &= (uint16_t)~TOK_ATTR_RSTRIP;
        }
    }

    /* byte-level BPE pieces decode to their bytes, user-defined pieces to
     * their text as written: checked once built */
    for (int i = 0; i < n_vocab; i++) {
        size_t dl = 0;
        if (tokenizer_decode(t, -1, i, NULL, 0, &dl, err) != DOZE_OK || dl > DOZE_MAX_PIECE) {
            tokenizer_free(t);
            return doze_fail(err, DOZE_ERR_BAD_FORMAT, "token %d decodes to more than %d bytes",
                             i, DOZE_MAX_PIECE);
        }
    }

    /* byte fallback as llama.cpp's byte_to_token: the "<0xNN>" piece, else
     * the single-byte piece, else (here) the unknown token */
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char buf[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        int id = tok_lookup(t, buf, 6);
        if (id < 0) {
            char c = (char)b;
            id = tok_lookup(t, &c, 1);
        }
        t->byte_token[b] = id >= 0 ? id : unk;
    }

    *out = t;
    return DOZE_OK;
}

int tokenizer_vocab_size(const doze_tokenizer *t) { return t ? t->n_vocab : 0; }
int tokenizer_is_eog(const doze_tokenizer *t, int token) {
    return t && token >= 0 && token < t->n_vocab && t->eog[token];
}
int tokenizer_eot(const doze_tokenizer *t) { return t ? t->eot : -1; }
int tokenizer_add_bos(const doze_tokenizer *t) { return t ? t->add_bos : 0; }
int tokenizer_bos(const doze_tokenizer *t) { return t ? t->bos : -1; }
int tokenizer_eos(const doze_tokenizer *t) { return t ? t->eos : -1; }
int tokenizer_unk(const doze_tokenizer *t) { return t ? t->unk : -1; }

const char *tokenizer_piece(const doze_tokenizer *t, int token) {
    if (!t || token < 0 || token >= t->n_vocab) return NULL;
    return t->text + t->offset[token];
}

/* ---- encoding ---------------------------------------------------------------------- */

typedef struct {
    int32_t start; /* byte offset in the escaped text */
    int32_t n;     /* bytes; 0 once merged into its left neighbour */
    int32_t prev, next;
} symbol;

typedef struct {
    float score;
    int32_t left, right;
    int32_t size; /* bytes of the pair when it was queued */
} bigram;

typedef struct {
    bigram *items;
    size_t n, cap;
} bigram_heap;

/* a comes out before b: higher score, then leftmost */
static int bigram_before(const bigram *a, const bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void heap_push(bigram_heap *hp, bigram b) {
    /* capacity is preallocated for the worst case (see tokenizer_encode) */
    size_t i = hp->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(&b, &hp->items[parent])) break;
        hp->items[i] = hp->items[parent];
        i = parent;
    }
    hp->items[i] = b;
}

static bigram heap_pop(bigram_heap *hp) {
    bigram top = hp->items[0];
    bigram last = hp->items[--hp->n];
    size_t i = 0, n = hp->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bigram_before(&hp->items[c + 1], &hp->items[c])) c++;
        if (!bigram_before(&hp->items[c], &last)) break;
        hp->items[i] = hp->items[c];
        i = c;
    }
    if (n > 0) hp->items[i] = last;
    return top;
}

static void try_add_bigram(const doze_tokenizer *t, const char *text, const symbol *syms,
                           bigram_heap *hp, int left, int right) {
    if (left < 0 || right < 0) return;
    int32_t size = syms[left].n + syms[right].n;
    int id = tok_lookup(t, text + syms[left].start, (size_t)size);
    if (id < 0) return;
    if (hp->n >= hp->cap) return; /* cannot happen: cap covers every push */
    bigram b = {t->score[id], left, right, size};
    heap_push(hp, b);
}


/* The symbol's token, or its bytes through the byte tokens. */
static doze_status emit_symbol(const doze_tokenizer *t, const char *text, const symbol *s,
                               tok_emitter *e, doze_error *err) {
    int id = tok_lookup(t, text + s->start, (size_t)s->n);
    if (id >= 0) {
        tok_emit(e, id);
        return DOZE_OK;
    }
    for (int32_t j = 0; j < s->n; j++) {
        unsigned char b = (unsigned char)text[s->start + j];
        int bid = t->byte_token[b];
        if (bid < 0)
            return doze_fail(err, DOZE_ERR_MISSING,
                             "cannot encode byte 0x%02X: the vocabulary has no <0x%02X> token "
                             "and no unknown token",
                             b, b);
        tok_emit(e, bid);
    }
    return DOZE_OK;
}

/* SentencePiece on one stretch of text (no special tokens in it): spaces
 * become U+2581, with a dummy one in front when prefix is set. */
static doze_status spm_encode_fragment(const doze_tokenizer *t, const char *text, size_t len,
                                       int prefix, tok_emitter *e, doze_error *err) {
    /* escape: dummy prefix + every ' ' as U+2581 (3 bytes) */
    size_t spaces = 0;
    for (size_t i = 0; i < len; i++) spaces += text[i] == ' ';
    size_t esc_len = len + 2 * spaces + (prefix ? 3 : 0);
    if (esc_len == 0) return DOZE_OK;

    char *esc = alloc_array(esc_len, 1);
    symbol *syms = alloc_array(esc_len, sizeof *syms);
    /* pushes: at most n-1 seeds + 2 per merge (at most n-1 merges) */
    bigram_heap hp = {alloc_array(3 * esc_len, sizeof(bigram)), 0, 3 * esc_len};
    if (!esc || !syms || !hp.items) {
        free(esc);
        free(syms);
        free(hp.items);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory tokenizing %zu bytes", len);
    }

    size_t k = 0;
    if (prefix) {
        memcpy(esc, "\xE2\x96\x81", 3);
        k = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(esc + k, "\xE2\x96\x81", 3);
            k += 3;
        } else {
            esc[k++] = text[i];
        }
    }

    /* one symbol per UTF-8 character (the escaped text is valid UTF-8) */
    int n_syms = 0;
    for (size_t i = 0; i < esc_len;) {
        size_t l = unicode_utf8_len((const unsigned char *)esc, esc_len, i, NULL);
        if (l == 0) l = 1; /* cannot happen after validation */
        symbol *s = &syms[n_syms];
        s->start = (int32_t)i;
        s->n = (int32_t)l;
        s->prev = n_syms - 1;
        i += l;
        s->next = i >= esc_len ? -1 : n_syms + 1;
        n_syms++;
    }

    for (int i = 1; i < n_syms; i++) try_add_bigram(t, esc, syms, &hp, i - 1, i);

    while (hp.n > 0) {
        bigram b = heap_pop(&hp);
        symbol *l = &syms[b.left], *r = &syms[b.right];
        /* stale: one side already merged away or grown since queued */
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size || l->next != b.right) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) syms[r->next].prev = b.left;
        try_add_bigram(t, esc, syms, &hp, l->prev, b.left);
        try_add_bigram(t, esc, syms, &hp, b.left, l->next);
    }

    doze_status st = DOZE_OK;
    for (int i = 0; i != -1 && st == DOZE_OK; i = syms[i].next)
        st = emit_symbol(t, esc, &syms[i], e, err);

    free(esc);
    free(syms);
    free(hp.items);
    return st;
}

/* A stretch of the text: raw text [start, start + len) or a special token. */
typedef struct {
    size_t start, len;
    int32_t token; /* -1: raw text */
} fragment;

typedef struct {
    fragment *items;
    size_t n, cap;
} fragment_list;

static int frag_push(fragment_list *l, size_t start, size_t len, int32_t token) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        fragment *p = realloc(l->items, cap * sizeof *p);
        if (!p) return 0;
        l->items = p;
        l->cap = cap;
    }
    fragment f = {start, len, token};
    l->items[l->n++] = f;
    return 1;
}

static int is_c_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* First occurrence of needle[0..m) in s[0..n), or SIZE_MAX. */
static size_t find_bytes(const char *s, size_t n, const char *needle, size_t m) {
    if (m == 0 || m > n) return SIZE_MAX;
    const char *p = s, *end = s + n - m + 1;
    while (p < end) {
        const char *q = memchr(p, needle[0], (size_t)(end - p));
        if (!q) return SIZE_MAX;
        if (memcmp(q, needle, m) == 0) return (size_t)(q - s);
        p = q + 1;
    }
    return SIZE_MAX;
}

/* Whether [at, at + m) overlaps one of the n literal byte ranges
 * (literal: (n, 2) [start, end) pairs) */
static int in_literal(const size_t *literal, int n, size_t at, size_t m) {
    for (int i = 0; i < n; i++)
        if (at < literal[2 * i + 1] && literal[2 * i] < at + m) return 1;
    return 0;
}

/* Splits the text at special tokens as llama.cpp does: each special token,
 * longest first, cuts every raw stretch at each of its occurrences. Control
 * and unknown tokens only when parse_special, and not where they overlap a
 * literal range; user-defined tokens always. Tokens marked lstrip/rstrip eat
 * the white space beside them. */
static doze_status partition(const doze_tokenizer *t, const char *text, size_t len, int parse_special,
                             const size_t *literal, int n_literal, fragment_list *out, doze_error *err) {
    fragment_list cur = {0}, next = {0};
    doze_status st = DOZE_OK;
    if (!frag_push(&cur, 0, len, -1)) goto oom;
    /* byte pairs present in the text: a token whose first two bytes never
     * occur together cannot match (most of them, for a short text) */
    uint8_t *pairs = calloc(65536 / 8, 1);
    if (!pairs) goto oom;
    for (size_t i = 0; i + 1 < len; i++) {
        unsigned v = (unsigned)(unsigned char)text[i] << 8 | (unsigned char)text[i + 1];
        pairs[v >> 3] |= (uint8_t)(1u << (v & 7));
    }
    for (int k = 0; k < t->n_special; k++) {
        int32_t id = t->special[k];
        uint16_t a = t->attr[id];
        if (!parse_special && (a & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN))) continue;
        const char *piece = t->text + t->offset[id];
        size_t m = t->len[id];
        if (m > len) continue;
        if (m >= 2) {
            unsigned v = (unsigned)(unsigned char)piece[0] << 8 | (unsigned char)piece[1];
            if (!(pairs[v >> 3] & (1u << (v & 7)))) continue;
        }
        const int guarded = n_literal > 0 && (a & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN));
        int changed = 0;
        next.n = 0;
        for (size_t f = 0; f < cur.n; f++) {
            fragment fr = cur.items[f];
            if (fr.token >= 0) {
                if (!frag_push(&next, fr.start, fr.len, fr.token)) goto oom_pairs;
                continue;
            }
            size_t base = fr.start, rest = fr.len, from = 0; /* search [base + from, base + rest) */
            for (;;) {
                size_t at = find_bytes(text + base + from, rest - from, piece, m);
                if (at == SIZE_MAX) {
                    if (rest > 0 && !frag_push(&next, base, rest, -1)) goto oom_pairs;
                    break;
                }
                at += from;
                if (guarded && in_literal(literal, n_literal, base + at, m)) {
                    from = at + 1; /* text here: look further on in the same stretch */
                    continue;
                }
                from = 0;
                changed = 1;
                size_t left = at;
                if (a & TOK_ATTR_LSTRIP)
                    while (left > 0 && is_c_space(text[base + left - 1])) left--;
                if (left > 0 && !frag_push(&next, base, left, -1)) goto oom_pairs;
                if (!frag_push(&next, base + at, m, id)) goto oom_pairs;
                base += at + m;
                rest -= at + m;
                if (a & TOK_ATTR_RSTRIP)
                    while (rest > 0 && is_c_space(text[base])) {
                        base++;
                        rest--;
                    }
            }
        }
        if (changed) {
            fragment_list tmp = cur;
            cur = next;
            next = tmp;
        }
    }
    free(pairs);
    free(next.items);
    *out = cur;
    return st;
oom_pairs:
    free(pairs);
oom:
    free(cur.items);
    free(next.items);
    return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory tokenizing %zu bytes", len);
}

doze_status tokenizer_encode(const doze_tokenizer *t, const char *text, size_t len, int flags,
                             int32_t *out, int cap, int *n_out, doze_error *err) {
    return tokenizer_encode_literal(t, text, len, flags, NULL, 0, out, cap, n_out, err);
}

doze_status tokenizer_encode_literal(const doze_tokenizer *t, const char *text, size_t len, int flags,
                                     const size_t *literal, int n_literal, int32_t *out, int cap, int *n_out,
                                     doze_error *err) {
    if (n_out) *n_out = 0;
    if (!t || !n_out || (len > 0 && !text) || cap < 0 || (cap > 0 && !out) || n_literal < 0 ||
        (n_literal > 0 && !literal))
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "tokenizer_encode: invalid arguments");
    for (int i = 0; i < n_literal; i++)
        if (literal[2 * i] > literal[2 * i + 1] || literal[2 * i + 1] > len)
            return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT,
                             "literal range %d [%zu, %zu) is not within the text's %zu bytes", i, literal[2 * i],
                             literal[2 * i + 1], len);
    size_t bad = unicode_utf8_first_invalid((const unsigned char *)text, len);
    if (bad != SIZE_MAX)
        return doze_fail(err, DOZE_ERR_BAD_UTF8, "invalid UTF-8 in the text at byte offset %zu",
                         bad);
    const size_t limit = (size_t)INT32_MAX / 8;
    if (len > limit)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "text too long to tokenize (%zu bytes)",
                         len);
    int add_special = (flags & DOZE_TOKENIZE_ADD_SPECIAL) != 0;
    int parse_special = (flags & DOZE_TOKENIZE_PARSE_SPECIAL) != 0;

    tok_emitter e = {out, cap, 0};
    if (add_special && t->add_bos && t->bos >= 0) tok_emit(&e, t->bos);

    doze_status st = DOZE_OK;
    if (len > 0) {
        fragment_list frags = {0};
        st = partition(t, text, len, parse_special, literal, n_literal, &frags, err);
        int prev_special = 1; /* SentencePiece's dummy space: at the start and after a special */
        for (size_t f = 0; st == DOZE_OK && f < frags.n; f++) {
            const fragment *fr = &frags.items[f];
            if (fr->token >= 0) {
                tok_emit(&e, fr->token);
                prev_special = 1;
            } else if (t->kind == TOK_KIND_BPE) {
                st = bpe_encode_fragment(t, text + fr->start, fr->len, &e, err);
            } else {
                st = spm_encode_fragment(t, text + fr->start, fr->len,
                                         t->add_space_prefix && prev_special, &e, err);
                prev_special = 0;
            }
        }
        free(frags.items);
    }
    if (st != DOZE_OK) return st;
    if (add_special && t->add_eos && t->eos >= 0) tok_emit(&e, t->eos);
    *n_out = e.count;
    return DOZE_OK;
}

/* ---- decoding ------------------------------------------------------------------------ */

doze_status tokenizer_decode(const doze_tokenizer *t, int prev, int token, char *buf, size_t cap,
                             size_t *len, doze_error *err) {
    if (len) *len = 0;
    if (!t || !len || (cap > 0 && !buf))
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "tokenizer_decode: invalid arguments");
    if (token < 0 || token >= t->n_vocab)
        return doze_fail(err, DOZE_ERR_TOKEN_RANGE, "token %d is outside the vocabulary (0..%d)",
                         token, t->n_vocab - 1);
    if (prev < -1 || prev >= t->n_vocab)
        return doze_fail(err, DOZE_ERR_TOKEN_RANGE,
                         "previous token %d is outside the vocabulary (0..%d, or -1)", prev,
                         t->n_vocab - 1);

    size_t n = 0;
    int type = t->type[token];
    uint16_t attr = t->attr[token];
    if (attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN)) {
        /* nothing, as llama.cpp: a sampled <unk> is not text */
    } else if (t->kind == TOK_KIND_BPE && type != DOZE_TOKEN_BYTE) {
        const char *p = t->text + t->offset[token];
        size_t plen = t->len[token];
        if (attr & TOK_ATTR_NORMAL) {
            n = bpe_decode_piece(t, p, plen, buf, cap);
        } else {
            /* user-defined and other tokens: their text as it is */
            for (size_t i = 0; i < plen; i++)
                if (i < cap) buf[i] = p[i];
            n = plen;
        }
    } else if (type == DOZE_TOKEN_BYTE && t->byte_value[token] >= 0) {
        if (cap > 0) buf[0] = (char)t->byte_value[token];
        n = 1;
    } else if (attr & TOK_ATTR_USER_DEFINED) {
        /* a user-defined token is its text as written (no U+2581 unescaping),
         * as in llama.cpp */
        const char *p = t->text + t->offset[token];
        n = t->len[token];
        for (size_t i = 0; i < n && i < cap; i++) buf[i] = p[i];
    } else {
        const char *p = t->text + t->offset[token];
        size_t plen = t->len[token];
        /* the dummy space the encoder puts at the start of the text (and
         * after BOS, which starts a text) is not the text's: the piece that
         * opens a text gives it back, so that decoding what tokenize() made
         * returns the text with or without BOS. A vocabulary without the
         * prefix (add_space_prefix false) keeps every space. */
        int drop_space = t->add_space_prefix && (prev == -1 || (t->bos >= 0 && prev == t->bos));
        for (size_t i = 0; i < plen;) {
            char c;
            size_t step;
            if (plen - i >= 3 && memcmp(p + i, "\xE2\x96\x81", 3) == 0) {
                c = ' ';
                step = 3;
            } else {
                c = p[i];
                step = 1;
            }
            i += step;
            if (drop_space && c == ' ' && n == 0) {
                drop_space = 0;
                continue;
            }
            drop_space = 0;
            if (n < cap) buf[n] = c;
            n++;
        }
    }
    if (n < cap) buf[n] = '\0';
    *len = n;
    return DOZE_OK;
}
