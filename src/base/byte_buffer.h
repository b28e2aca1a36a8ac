/* A growing byte buffer that the GGUF writers' callbacks can write into. */
#ifndef DOZE_BYTE_BUFFER_H
#define DOZE_BYTE_BUFFER_H

#include <stdlib.h>
#include <string.h>

typedef struct {
    unsigned char *data; /* owned; free() it */
    size_t len, cap;
} doze_byte_buffer;

/* gguf_write_fn over a doze_byte_buffer: appends n bytes; 0 on success */
static inline int doze_byte_buffer_write(void *ctx, const void *p, size_t n) {
    doze_byte_buffer *b = (doze_byte_buffer *)ctx;
    if (n > (size_t)-1 - b->len) return 1;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) {
            if (cap > (size_t)-1 / 2) return 1;
            cap *= 2;
        }
        unsigned char *nd = (unsigned char *)realloc(b->data, cap);
        if (!nd) return 1;
        b->data = nd;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

#endif
