/* Carving one buffer into named tensors (the trainers' activations and
 * gradients): a first pass with base == NULL measures, a second carves. */
#ifndef DOZE_CARVE_H
#define DOZE_CARVE_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct {
    uint8_t *base; /* NULL: only measure */
    size_t at;     /* bytes laid out so far */
} carver;

/* n floats, 64-byte aligned */
static inline float *carve(carver *c, size_t n) {
    size_t off = (c->at + 63) & ~(size_t)63;
    c->at = off + n * sizeof(float);
    return c->base ? (float *)(c->base + off) : NULL;
}

/* n bytes, 64-byte aligned */
static inline uint8_t *carve_bytes(carver *c, size_t n) {
    size_t off = (c->at + 63) & ~(size_t)63;
    c->at = off + n;
    return c->base ? c->base + off : NULL;
}

/* One allocation for everything `lay` carves: lay runs once to measure and
 * once to cut the block (64-byte aligned inside it). Returns the block to
 * free, or NULL when out of memory (nothing carved then). */
static inline uint8_t *carve_alloc(void (*lay)(carver *c, void *ctx), void *ctx) {
    carver c = {NULL, 0};
    lay(&c, ctx);
    uint8_t *block = (uint8_t *)malloc(c.at + 64);
    if (!block) return NULL;
    c = (carver){(uint8_t *)(((uintptr_t)block + 63) & ~(uintptr_t)63), 0};
    lay(&c, ctx);
    return block;
}

#endif
