/* Code point classes for the byte-level BPE pre-tokenizers: the general
 * category folded to the classes their regexes use, the White_Space
 * property, and the simple lowercase mapping. The tables are generated
 * (unicode_tables.c, by tools/gen_unicode_tables.py from the Unicode
 * Character Database); code points past U+10FFFF have no flags at all. */
#ifndef DOZE_UNICODE_H
#define DOZE_UNICODE_H

#include <stddef.h>
#include <stdint.h>

enum {
    UNI_UNDEFINED = 0x001, /* unassigned (Cn) */
    UNI_NUMBER = 0x002,    /* \p{N} */
    UNI_LETTER = 0x004,    /* \p{L} */
    UNI_SEPARATOR = 0x008, /* \p{Z} */
    UNI_MARK = 0x010,      /* \p{M} */
    UNI_PUNCT = 0x020,     /* \p{P} */
    UNI_SYMBOL = 0x040,    /* \p{S} */
    UNI_CONTROL = 0x080,   /* \p{C} (Cc, Cf, Co, Cs) */
    UNI_WHITESPACE = 0x100 /* White_Space: \s */
};

typedef struct {
    uint32_t first; /* first code point of a run of equal flags */
    uint16_t flags;
} unicode_range;

typedef struct {
    uint32_t from, to;
} unicode_pair;

extern const unicode_range unicode_ranges[];
extern const int unicode_n_ranges;
extern const unicode_pair unicode_lower[]; /* sorted by from */
extern const int unicode_n_lower;

/* UNI_* flags of a code point (0 past U+10FFFF). */
unsigned unicode_flags(uint32_t cp);
/* Simple lowercase mapping (the code point itself when it has none). */
uint32_t unicode_tolower(uint32_t cp);

/* Decodes valid UTF-8 (the caller validated it) into code points; returns
 * the count (at most n). */
size_t unicode_decode(const char *s, size_t n, uint32_t *cps);
/* Writes the UTF-8 of cp into buf (4 bytes of room); returns its length. */
int unicode_encode(uint32_t cp, char *buf);
/* Length of the valid UTF-8 sequence starting at s[i] (s has n bytes), or 0
 * when the bytes there are not one (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF). Then *bad (when not NULL) gets the
 * bytes of the maximal subpart there (at least 1): the start of a sequence
 * cut short counts as one bad unit, as the WHATWG decoder (TextDecoder)
 * replaces it by one U+FFFD. */
size_t unicode_utf8_len(const unsigned char *s, size_t n, size_t i, size_t *bad);
/* Offset of the first byte of s that is not valid UTF-8, or SIZE_MAX. */
size_t unicode_utf8_first_invalid(const unsigned char *s, size_t n);

#endif
