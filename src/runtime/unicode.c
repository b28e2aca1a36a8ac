/* Lookups into the generated tables (unicode_tables.c) and UTF-8 helpers. */
#include "unicode.h"

unsigned unicode_flags(uint32_t cp) {
    if (cp >= 0x110000) return 0;
    /* last range whose first code point is <= cp (ranges[0].first == 0) */
    int lo = 0, hi = unicode_n_ranges - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (unicode_ranges[mid].first <= cp) lo = mid;
        else hi = mid - 1;
    }
    return unicode_ranges[lo].flags;
}

uint32_t unicode_tolower(uint32_t cp) {
    int lo = 0, hi = unicode_n_lower - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (unicode_lower[mid].from == cp) return unicode_lower[mid].to;
        if (unicode_lower[mid].from < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return cp;
}

size_t unicode_decode(const char *text, size_t n, uint32_t *cps) {
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, k = 0;
    while (i < n) {
        unsigned c = s[i];
        uint32_t cp;
        size_t len;
        if (c < 0x80) {
            cp = c;
            len = 1;
        } else if (c < 0xE0) {
            cp = c & 0x1F;
            len = 2;
        } else if (c < 0xF0) {
            cp = c & 0x0F;
            len = 3;
        } else {
            cp = c & 0x07;
            len = 4;
        }
        if (len > n - i) len = n - i; /* cannot happen on validated text */
        for (size_t j = 1; j < len; j++) cp = (cp << 6) | (s[i + j] & 0x3F);
        cps[k++] = cp;
        i += len;
    }
    return k;
}

int unicode_encode(uint32_t cp, char *buf) {
    unsigned char *b = (unsigned char *)buf;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    b[0] = (unsigned char)(0xF0 | (cp >> 18));
    b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t unicode_utf8_len(const unsigned char *s, size_t n, size_t i, size_t *bad) {
    unsigned char c = s[i];
    if (bad) *bad = 1;
    if (c < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        need = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;      /* overlong */
        else if (c == 0xED) hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 4;
        if (c == 0xF0) lo = 0x90;      /* overlong */
        else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0;
    }
    size_t k = 1; /* bytes that still fit a sequence */
    while (k < need && i + k < n) {
        unsigned char b = s[i + k];
        if (k == 1 ? (b < lo || b > hi) : (b & 0xC0) != 0x80) break;
        k++;
    }
    if (k == need) return need;
    if (bad) *bad = k;
    return 0;
}

size_t unicode_utf8_first_invalid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t l = unicode_utf8_len(s, n, i, NULL);
        if (l == 0) return i;
        i += l;
    }
    return SIZE_MAX;
}
