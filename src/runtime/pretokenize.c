/* Pre-tokenizers of byte-level BPE, as llama.cpp runs them.
 *
 * llama.cpp applies each pre-tokenizer's regexes one after another, every
 * regex splitting each piece left by the one before. Three regexes (GPT-2's,
 * Llama 3's, Qwen2's) have hand-written splitters in llama.cpp, which emit a
 * single code point when no alternative matches; the others run through
 * std::regex, where the matches are kept as pieces and so are the unmatched
 * stretches between them. Those std::regex runs see a "collapsed" text:
 * \p{L}, \p{N}, \p{P} are the Unicode classes (for ASCII the same as the
 * classes' ASCII members), \s is White_Space (non-ASCII white space is
 * replaced by U+000B, so explicit character ranges never contain it).
 *
 * Each stage here is a matcher m(seg, pos) giving the length of the match
 * starting at pos (0: none), ECMAScript semantics: alternatives tried in
 * order, greedy quantifiers with backtracking. A driver turns matchers into
 * pieces the way llama.cpp does for that kind of regex.
 */
#include "pretokenize.h"

#include <string.h>

#include "unicode.h"

typedef struct {
    const uint32_t *cps;
    const uint16_t *fl;
    size_t start, end; /* the piece being split */
} seg;

#define F_WS UNI_WHITESPACE
#define F_L UNI_LETTER
#define F_N UNI_NUMBER

/* flags at i, 0 outside the piece */
static unsigned F(const seg *s, size_t i) { return i >= s->start && i < s->end ? s->fl[i] : 0; }
/* code point at i, UINT32_MAX outside the piece */
static uint32_t C(const seg *s, size_t i) {
    return i >= s->start && i < s->end ? s->cps[i] : UINT32_MAX;
}
/* the code point std::wregex sees: non-ASCII white space became U+000B */
static uint32_t W(const seg *s, size_t i) {
    uint32_t c = C(s, i);
    return c != UINT32_MAX && c > 0x7F && (F(s, i) & F_WS) ? 0x0B : c;
}

typedef struct {
    uint32_t lo, hi;
} cp_range;

static int in_ranges(uint32_t c, const cp_range *r, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (c >= r[i].lo && c <= r[i].hi) return 1;
    return 0;
}

/* ---- the three hand-written splitters of llama.cpp ------------------------------- */

/* 's|'t|'re|'ve|'m|'ll|'d (case-insensitive when fold) */
static size_t m_contraction(const seg *s, size_t pos, int fold) {
    if (C(s, pos) != '\'' || pos + 1 >= s->end) return 0;
    uint32_t a = C(s, pos + 1);
    if (fold) a = unicode_tolower(a);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (pos + 2 >= s->end) return 0;
    uint32_t b = C(s, pos + 2);
    if (fold) b = unicode_tolower(b);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t m_gpt2(const seg *s, size_t pos) {
    size_t n = m_contraction(s, pos, 0);
    if (n) return n;
    uint32_t c = C(s, pos);
    unsigned f2 = c == ' ' ? F(s, pos + 1) : F(s, pos);
    size_t p = pos + (c == ' ');
    if (f2 & F_L) {
        while (F(s, p) & F_L) p++;
        return p - pos;
    }
    if (f2 & F_N) {
        while (F(s, p) & F_N) p++;
        return p - pos;
    }
    if (!(f2 & (F_WS | F_L | F_N)) && f2) {
        while (!(F(s, p) & (F_WS | F_L | F_N)) && F(s, p)) p++;
        return p - pos;
    }
    size_t nws = 0;
    while (F(s, pos + nws) & F_WS) nws++;
    if (nws > 1 && pos + nws < s->end) return nws - 1;
    return nws;
}

/* Llama 3 (digits = 3) and Qwen2 (digits = 1):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,digits}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t m_llama3_like(const seg *s, size_t pos, size_t digits) {
    size_t n = m_contraction(s, pos, 1);
    if (n) return n;
    uint32_t c = C(s, pos);
    unsigned f = F(s, pos);
    if (!(c == '\r' || c == '\n' || (f & F_N)) && ((f & F_L) || (F(s, pos + 1) & F_L))) {
        size_t p = pos + 1;
        while (F(s, p) & F_L) p++;
        return p - pos;
    }
    if (f & F_N) {
        size_t p = pos;
        while ((F(s, p) & F_N) && p - pos < digits) p++;
        return p - pos;
    }
    unsigned f2 = c == ' ' ? F(s, pos + 1) : f;
    if (!(f2 & (F_WS | F_L | F_N)) && f) {
        size_t p = pos + (c == ' ');
        while (!(F(s, p) & (F_WS | F_L | F_N)) && F(s, p)) p++;
        while (C(s, p) == '\r' || C(s, p) == '\n') p++;
        return p - pos;
    }
    size_t nws = 0, last_rn = 0;
    while (F(s, pos + nws) & F_WS) {
        uint32_t w = C(s, pos + nws);
        if (w == '\r' || w == '\n') last_rn = pos + nws + 1;
        nws++;
    }
    if (last_rn) return last_rn - pos;
    if (nws > 1 && pos + nws < s->end) return nws - 1;
    return nws;
}

static size_t m_llama3(const seg *s, size_t pos) { return m_llama3_like(s, pos, 3); }
static size_t m_qwen2(const seg *s, size_t pos) { return m_llama3_like(s, pos, 1); }

/* ---- std::regex stages ------------------------------------------------------------ */

/* [\p{P}\$\+<=>\^~\|]+ (falcon adds the backquote) */
static size_t punct_run(const seg *s, size_t pos, int backquote) {
    size_t p = pos;
    for (;;) {
        uint32_t c = C(s, p);
        if (c == UINT32_MAX) break;
        int ok = (F(s, p) & UNI_PUNCT) || (c < 0x80 && strchr("$+<=>^~|", (int)c) && c) ||
                 (backquote && c == '`');
        if (!ok) break;
        p++;
    }
    return p - pos;
}
static size_t m_default_punct(const seg *s, size_t pos) { return punct_run(s, pos, 0); }
static size_t m_falcon_punct(const seg *s, size_t pos) { return punct_run(s, pos, 1); }

/* \p{N}+ and \p{N} */
static size_t m_numbers(const seg *s, size_t pos) {
    size_t p = pos;
    while (F(s, p) & F_N) p++;
    return p - pos;
}
static size_t m_number(const seg *s, size_t pos) { return (F(s, pos) & F_N) ? 1 : 0; }

/* [0-9][0-9][0-9] */
static size_t m_three_digits(const seg *s, size_t pos) {
    for (size_t i = 0; i < 3; i++) {
        uint32_t c = W(s, pos + i);
        if (c < '0' || c > '9') return 0;
    }
    return 3;
}

/* [\r\n] */
static size_t m_newline(const seg *s, size_t pos) {
    uint32_t c = C(s, pos);
    return c == '\r' || c == '\n' ? 1 : 0;
}

/* \s?X+ where X is a flag class */
static size_t opt_space_run(const seg *s, size_t pos, unsigned cls) {
    size_t p = pos;
    if ((F(s, p) & F_WS) && (F(s, p + 1) & cls)) p++;
    size_t q = p;
    while (F(s, q) & cls) q++;
    return q > p ? q - pos : 0;
}
static size_t m_space_letters(const seg *s, size_t pos) { return opt_space_run(s, pos, F_L); }
static size_t m_space_puncts(const seg *s, size_t pos) { return opt_space_run(s, pos, UNI_PUNCT); }

/* \s?[ranges]+ on the wregex view of the text */
static size_t opt_space_ranges(const seg *s, size_t pos, const cp_range *r, size_t nr) {
    size_t p = pos;
    if ((F(s, p) & F_WS) && C(s, p + 1) != UINT32_MAX && in_ranges(W(s, p + 1), r, nr)) p++;
    size_t q = p;
    while (C(s, q) != UINT32_MAX && in_ranges(W(s, q), r, nr)) q++;
    return q > p ? q - pos : 0;
}

/* The character classes of DeepSeek LLM's regexes (from its tokenizer.json,
 * as llama.cpp writes them). */
static const cp_range ds_letters[] = {
    {0x0041, 0x005A},   {0x0061, 0x007A},   {0x00B5, 0x00B5},   {0x00C0, 0x00D6},
    {0x00D8, 0x00F6},   {0x00F8, 0x01BA},   {0x01BC, 0x01BF},   {0x01C4, 0x0293},
    {0x0295, 0x02AF},   {0x0370, 0x0373},   {0x0376, 0x0377},   {0x037B, 0x037D},
    {0x037F, 0x037F},   {0x0386, 0x0386},   {0x0388, 0x038A},   {0x038C, 0x038C},
    {0x038E, 0x03A1},   {0x03A3, 0x03F5},   {0x03F7, 0x0481},   {0x048A, 0x052F},
    {0x0531, 0x0556},   {0x10A0, 0x10C5},   {0x13A0, 0x13F5},   {0x13F8, 0x13FD},
    {0x1C90, 0x1CBA},   {0x1CBD, 0x1CBF},   {0x1D00, 0x1D2B},   {0x1D6B, 0x1D77},
    {0x1D79, 0x1D9A},   {0x1E00, 0x1F15},   {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},
    {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},   {0x1F59, 0x1F59},   {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},   {0x1FB6, 0x1FBC},
    {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},
    {0x1FD6, 0x1FDB},   {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},
    {0x2102, 0x2102},   {0x2107, 0x2107},   {0x210A, 0x2113},   {0x2115, 0x2115},
    {0x2119, 0x211D},   {0x2124, 0x2124},   {0x2126, 0x2126},   {0x2128, 0x2128},
    {0x212A, 0x212D},   {0x212F, 0x2134},   {0x2139, 0x2139},   {0x213C, 0x213F},
    {0x2145, 0x2149},   {0x214E, 0x214E},   {0x2183, 0x2184},   {0x2C00, 0x2C7B},
    {0x2C7E, 0x2CE4},   {0x2CEB, 0x2CEE},   {0x2CF2, 0x2CF3},   {0xA640, 0xA66D},
    {0xA680, 0xA69B},   {0xA722, 0xA76F},   {0xA771, 0xA787},   {0xA78B, 0xA78E},
    {0xAB70, 0xABBF},   {0xFB00, 0xFB06},   {0xFB13, 0xFB17},   {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A},   {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943}};
static const cp_range ds_puncts[] = {{0x0021, 0x002F}, {0x003A, 0x007E}, {0xFF01, 0xFF0F},
                                     {0xFF1A, 0xFF5E}, {0x2018, 0x201F}, {0x3000, 0x3002}};
static const cp_range ds_cjk[] = {{0x4E00, 0x9FA5}, {0x0800, 0x4E00}, {0xAC00, 0xD7FF}};

#define NR(a) (sizeof(a) / sizeof((a)[0]))

static size_t m_ds_letters(const seg *s, size_t pos) {
    return opt_space_ranges(s, pos, ds_letters, NR(ds_letters));
}
static size_t m_ds_puncts(const seg *s, size_t pos) {
    return opt_space_ranges(s, pos, ds_puncts, NR(ds_puncts));
}
/* [一-龥ࠀ-一가-퟿]+ */
static size_t m_ds_cjk(const seg *s, size_t pos) {
    size_t q = pos;
    while (C(s, q) != UINT32_MAX && in_ranges(W(s, q), ds_cjk, NR(ds_cjk))) q++;
    return q - pos;
}
/* \s+$ */
static size_t m_trailing_space(const seg *s, size_t pos) {
    size_t p = pos;
    while (F(s, p) & F_WS) p++;
    return p == s->end ? p - pos : 0;
}

/* ---- drivers ---------------------------------------------------------------------- */

typedef size_t (*matcher)(const seg *s, size_t pos);
typedef struct {
    matcher m;
    int custom; /* llama.cpp's hand-written splitter: no match emits one code point */
} stage;

/* Splits [start, end) with one stage; appends piece ends to out. */
static size_t split_piece(const stage *st, const seg *s, uint32_t *out, size_t k) {
    size_t pos = s->start, gap = s->start;
    while (pos < s->end) {
        size_t n = st->m(s, pos);
        if (n == 0 && st->custom) n = 1;
        if (n == 0) {
            pos++;
            continue;
        }
        if (pos > gap) out[k++] = (uint32_t)pos;
        pos += n;
        out[k++] = (uint32_t)pos;
        gap = pos;
    }
    if (s->end > gap) out[k++] = (uint32_t)s->end;
    return k;
}

static const stage st_default[] = {{m_default_punct, 0}, {m_gpt2, 1}, {m_numbers, 0},
                                   {m_three_digits, 0}};
static const stage st_gpt2[] = {{m_gpt2, 1}};
static const stage st_llama3[] = {{m_llama3, 1}};
static const stage st_qwen2[] = {{m_qwen2, 1}};
static const stage st_deepseek_llm[] = {{m_newline, 0},      {m_ds_letters, 0}, {m_ds_puncts, 0},
                                        {m_trailing_space, 0}, {m_ds_cjk, 0},     {m_numbers, 0}};
static const stage st_deepseek_coder[] = {{m_newline, 0}, {m_space_letters, 0},
                                          {m_space_puncts, 0}, {m_ds_cjk, 0}, {m_number, 0}};
static const stage st_falcon[] = {{m_falcon_punct, 0}, {m_gpt2, 1}, {m_three_digits, 0}};
static const stage st_starcoder[] = {{m_number, 0}, {m_gpt2, 1}};

size_t pretokenize(pretok_type type, const uint32_t *cps, size_t n, uint16_t *flags,
                   uint32_t *ends, uint32_t *tmp) {
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) flags[i] = (uint16_t)unicode_flags(cps[i]);
    const stage *stages;
    size_t n_stages;
    switch (type) {
    case PRETOK_GPT2: stages = st_gpt2; n_stages = NR(st_gpt2); break;
    case PRETOK_LLAMA3: stages = st_llama3; n_stages = NR(st_llama3); break;
    case PRETOK_QWEN2: stages = st_qwen2; n_stages = NR(st_qwen2); break;
    case PRETOK_DEEPSEEK_LLM: stages = st_deepseek_llm; n_stages = NR(st_deepseek_llm); break;
    case PRETOK_DEEPSEEK_CODER:
        stages = st_deepseek_coder;
        n_stages = NR(st_deepseek_coder);
        break;
    case PRETOK_FALCON: stages = st_falcon; n_stages = NR(st_falcon); break;
    case PRETOK_STARCODER: stages = st_starcoder; n_stages = NR(st_starcoder); break;
    default: stages = st_default; n_stages = NR(st_default); break;
    }
    /* pieces as ends; every stage refines them (at most n pieces) */
    size_t count = 1;
    ends[0] = (uint32_t)n;
    for (size_t k = 0; k < n_stages; k++) {
        size_t out = 0, start = 0;
        for (size_t i = 0; i < count; i++) {
            seg s = {cps, flags, start, ends[i]};
            out = split_piece(&stages[k], &s, tmp, out);
            start = ends[i];
        }
        memcpy(ends, tmp, out * sizeof *ends);
        count = out;
    }
    return count;
}

typedef struct {
    const char *name;
    pretok_type type;
    int ignore_merges, add_bos;
} pretok_name;

static const pretok_name pretok_names[] = {
    {"default", PRETOK_DEFAULT, 0, 0},
    {"gpt-2", PRETOK_GPT2, 0, 0},
    {"phi-2", PRETOK_GPT2, 0, 0},
    {"mpt", PRETOK_GPT2, 0, 0},
    {"olmo", PRETOK_GPT2, 0, 0},
    {"llama-bpe", PRETOK_LLAMA3, 1, 1},
    {"llama3", PRETOK_LLAMA3, 1, 1},
    {"llama-v3", PRETOK_LLAMA3, 1, 1},
    {"dbrx", PRETOK_LLAMA3, 0, 0},
    {"smaug-bpe", PRETOK_LLAMA3, 0, 0},
    {"qwen2", PRETOK_QWEN2, 0, 0},
    {"deepseek-r1-qwen", PRETOK_QWEN2, 0, 0},
    {"stablelm2", PRETOK_QWEN2, 0, 0},
    {"deepseek-llm", PRETOK_DEEPSEEK_LLM, 0, 0},
    {"deepseek-coder", PRETOK_DEEPSEEK_CODER, 0, 0},
    {"falcon", PRETOK_FALCON, 0, 0},
    {"starcoder", PRETOK_STARCODER, 0, 0},
    {"refact", PRETOK_STARCODER, 0, 0},
    {"smollm", PRETOK_STARCODER, 0, 0},
    {"codeshell", PRETOK_STARCODER, 0, 0},
    {"command-r", PRETOK_STARCODER, 0, 0},
};

int pretok_lookup(const char *name, size_t len, pretok_info *out) {
    for (size_t i = 0; i < NR(pretok_names); i++) {
        const pretok_name *p = &pretok_names[i];
        if (strlen(p->name) == len && memcmp(p->name, name, len) == 0) {
            out->type = p->type;
            out->ignore_merges = p->ignore_merges;
            out->add_bos = p->add_bos;
            return 0;
        }
    }
    return -1;
}
