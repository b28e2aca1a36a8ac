/* Model: configuration from GGUF metadata, tensor layout, weight wiring,
 * typed matrix-vector products, and the public model/tokenizer accessors. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch.h"
#include "error.h"
#include "types.h"

#define ARENA_ALIGN 64

doze_model_params doze_model_default_params(void) {
    doze_model_params p;
    memset(&p, 0, sizeof p);
    p.context_length = 0;
    p.kernels = DOZE_KERNELS_SIMD;
    p.max_memory = 0;
    p.threads = 1;
    return p;
}

/* the largest quant block of any layer's ffn_down (1: none quantized, or a
 * tensor missing: model_plan reports that) */
static int ffn_down_block_size(const gguf_header *h, const doze_model_info *info) {
    char nm[64];
    int widest = 1;
    for (int l = 0; l < info->n_layers; l++) {
        snprintf(nm, sizeof nm, "blk.%d.ffn_down.weight", l);
        const gguf_tensor *t = gguf_find_tensor(h, nm);
        const doze_type_traits *tt = t ? doze_type_traits_of((int)t->type) : NULL;
        if (tt && tt->block_size > widest) widest = tt->block_size;
    }
    return widest;
}

doze_status model_check_ffn_block(const gguf_header *h, const doze_model_info *info, int fb, doze_error *err) {
    if (info->n_experts)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT,
                         "ffn_block %d: a mixture of experts skips whole experts, not FFN blocks", fb);
    /* 16: x4 views of whole groups; a quantized ffn_down's blocks: its h is
     * quantized block by block */
    const int down_block = ffn_down_block_size(h, info), unit = down_block > 16 ? down_block : 16;
    if (unit == DOZE_FFN_BLOCK_SIZE && fb != unit)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT,
                         "ffn_block %d: this model's FFN blocks are %d channels (its ffn_down splits only at whole "
                         "%d-value super-blocks)", fb, unit, unit);
    if (fb < 16 || fb > DOZE_FFN_BLOCK_SIZE || fb % unit != 0)
        return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT,
                         "ffn_block %d: this model's FFN blocks are multiples of %d channels from %d to %d", fb, unit,
                         unit, DOZE_FFN_BLOCK_SIZE);
    return DOZE_OK;
}

/* Channels per FFN block. ffn_down is cut into blocks of columns, which
 * must be whole blocks of its type: the largest block size of any layer's
 * ffn_down when that exceeds 32 (256 for the K-quants: one super-block per
 * row per FFN block). Else 16 when every layer's ffn_gate, ffn_up and
 * ffn_down has 1-value blocks (f32, f16) and hidden_dim < 8 * 32 (a small
 * FFN: finer blocks give the router more to choose from); else 32 (q8_0,
 * q4_0 blocks), doubled while a block's ffn_gate rows are fewer than
 * DOZE_FFN_BLOCK_MIN_BYTES and the FFN keeps DOZE_FFN_MIN_BLOCKS blocks.
 * The doubling is for the memory: a running block is read as one short
 * stream between skipped ones, and the hardware's prefetch runs well past
 * the end of a short stream and starts slowly on the next one. With blocks
 * of 20 KB (q8_0, dim 576, 32 channels) skipping a quarter of the FFN
 * decoded no faster than dense; blocks of 80 KB keep most of the
 * saving (docs/skipping.md). A missing tensor or an unknown type is
 * reported by model_plan. */
int model_ffn_block_of(const gguf_header *h, const doze_model_info *info) {
    static const char *const names[3] = {"ffn_gate", "ffn_up", "ffn_down"};
    char nm[64];
    int all_unit = 1;
    uint64_t gate_row = 0; /* the widest ffn_gate row, in bytes */
    for (int l = 0; l < info->n_layers; l++)
        for (int i = 0; i < 3; i++) {
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, names[i]);
            const gguf_tensor *t = gguf_find_tensor(h, nm);
            const doze_type_traits *tt = t ? doze_type_traits_of((int)t->type) : NULL;
            if (!tt || tt->block_size > 1) all_unit = 0;
            if (tt && i == 0 && info->dim % tt->block_size == 0) {
                const uint64_t row = doze_type_row_bytes(tt->type, (uint64_t)info->dim);
                if (row > gate_row) gate_row = row;
            }
        }
    const int widest = ffn_down_block_size(h, info);
    if (widest > DOZE_FFN_BLOCK) return widest;
    if (info->hidden_dim < 8 * DOZE_FFN_BLOCK && all_unit) return DOZE_FFN_BLOCK_SMALL;
    int fb = DOZE_FFN_BLOCK;
    while (2 * fb <= DOZE_FFN_BLOCK_SIZE && (uint64_t)fb * gate_row < DOZE_FFN_BLOCK_MIN_BYTES &&
           info->hidden_dim / (2 * fb) >= DOZE_FFN_MIN_BLOCKS)
        fb *= 2;
    return fb;
}

/* ---- plan: which tensors, what shapes, where in the arena ------------------- */

static int slot_by_offset(const void *a, const void *b) {
    const doze_tensor_slot *x = a, *y = b;
    return x->src->offset < y->src->offset ? -1 : x->src->offset > y->src->offset;
}

void model_plan_free(doze_model_plan *plan) {
    free(plan->slots);
    memset(plan, 0, sizeof *plan);
}

/* Tensors the file has and the runtime would not use although they change
 * the model: layers past block_count, biases the llama body has no place
 * for. Refused, not ignored into other logits (llama.cpp refuses the first
 * and runs the second). */
static doze_status check_unused_tensors(const gguf_header *h, const doze_model_info *info, doze_error *err) {
    static const char *const unsupported[] = {"attn_output.bias", "ffn_gate.bias", "ffn_up.bias", "ffn_down.bias",
                                              "attn_norm.bias", "ffn_norm.bias"};
    for (uint64_t i = 0; i < h->n_tensors; i++) {
        const char *name = h->tensors[i].name.data, *rest = NULL;
        const int l = arch_layer_of(name, &rest);
        if (l < 0) continue;
        if (l >= info->n_layers)
            return doze_fail(err, DOZE_ERR_BAD_SHAPE, "tensor %s: the file has %d layers (block_count)", name,
                             info->n_layers);
        for (size_t k = 0; k < sizeof unsupported / sizeof unsupported[0]; k++)
            if (strcmp(rest, unsupported[k]) == 0)
                return doze_fail(err, DOZE_ERR_UNSUPPORTED_TYPE,
                                 "tensor %s is not supported: Doze's layer has no %s (the model would run "
                                 "without it)",
                                 name, unsupported[k]);
    }
    return DOZE_OK;
}

doze_status model_plan(const gguf_header *h, const doze_model_info *info, doze_model_plan *plan,
                       doze_error *err) {
    memset(plan, 0, sizeof *plan);
    doze_status unused = check_unused_tensors(h, info, err);
    if (unused != DOZE_OK) return unused;
    int n = arch_tensor_specs(info, NULL, 0);
    tensor_spec *specs = malloc((size_t)n * sizeof *specs);
    plan->slots = calloc((size_t)n, sizeof *plan->slots);
    if (!specs || !plan->slots) {
        free(specs);
        model_plan_free(plan);
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory planning %d tensors", n);
    }
    arch_tensor_specs(info, specs, n);
    uint64_t arena = 0;
    doze_status st = DOZE_OK;
    for (int i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_find_tensor(h, specs[i].name);
        if (!t) {
            st = doze_fail(err, DOZE_ERR_MISSING, "tensor %s is missing", specs[i].name);
            break;
        }
        int is_vec = specs[i].rows == 0;
        const uint64_t n_exp = specs[i].experts ? specs[i].experts : 1;
        int ok = is_vec ? (t->ne[0] == specs[i].cols && t->ne[1] == 1 && t->ne[2] == 1 && t->ne[3] == 1)
                        : (t->ne[0] == specs[i].cols && t->ne[1] == specs[i].rows && t->ne[2] == n_exp &&
                           t->ne[3] == 1);
        if (!ok) {
            st = doze_fail(err, DOZE_ERR_BAD_SHAPE,
                           "tensor %s: shape {%llu, %llu, %llu, %llu}, expected {%llu, %llu, %llu}",
                           specs[i].name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                           (unsigned long long)t->ne[2], (unsigned long long)t->ne[3],
                           (unsigned long long)specs[i].cols,
                           (unsigned long long)(is_vec ? 1 : specs[i].rows), (unsigned long long)n_exp);
            break;
        }
        if (!doze_type_traits_of((int)t->type)) {
            st = doze_fail(err, DOZE_ERR_UNSUPPORTED_TYPE, "tensor %s: type %u is not supported",
                           specs[i].name, t->type);
            break;
        }
        if (is_vec && t->type != DOZE_TYPE_F32 && t->type != DOZE_TYPE_F16) {
            st = doze_fail(err, DOZE_ERR_UNSUPPORTED_TYPE,
                           "tensor %s: norm weights must be f32 or f16, not %s", specs[i].name,
                           doze_type_name((int)t->type));
            break;
        }
        doze_tensor_slot *slot = &plan->slots[i];
        slot->src = t;
        if (info->rope_neox && arch_rotated_by_rope(specs[i].name)) {
            slot->neox = 1;
            uint64_t scratch = (uint64_t)info->head_dim * (is_vec ? 4u : doze_type_row_bytes((int)t->type, t->ne[0]));
            if (scratch > plan->scratch_size) plan->scratch_size = (size_t)scratch;
        }
        slot->kind = SLOT_PLAIN;
        slot->final_type = (int)t->type;
        uint64_t bytes = t->n_bytes;       /* room in the arena */
        uint64_t copy_at = 0;              /* where the raw bytes go, within that room */
        if (is_vec && t->type == DOZE_TYPE_F16) {
            /* kept as f32; the f16 bytes are staged after the f32 room */
            slot->kind = SLOT_NORM_F16;
            slot->final_type = DOZE_TYPE_F32;
            copy_at = specs[i].cols * 4u;
            bytes = copy_at + t->n_bytes;
        } else if (specs[i].experts) {
            /* a stack of experts: repacked in place 4 rows at a time when
             * each expert's rows are whole groups of 4, so that an expert's
             * view stays its own bytes */
            if (model_x4_fits((int)t->type, specs[i].rows, specs[i].cols)) {
                slot->kind = SLOT_INTERLEAVE4;
                uint64_t scratch = 4 * doze_type_row_bytes((int)t->type, specs[i].cols);
                if (scratch > plan->scratch_size) plan->scratch_size = (size_t)scratch;
            }
        } else if (strstr(specs[i].name, "attn_output") != NULL) {
            /* per-head column blocks; blocks cannot split a head whose size
             * is not a multiple of the block size: such heads are re-quantized
             * to the type's split type (K-quants: q8_0), or kept in f32 */
            slot->kind = SLOT_HEAD_BLOCKS;
            const doze_type_traits *tt = doze_type_traits_of((int)t->type);
            if (info->head_dim % tt->block_size != 0) {
                const doze_type_traits *st = doze_type_traits_of(tt->split_type);
                slot->final_type = st && info->head_dim % st->block_size == 0 ? st->type : DOZE_TYPE_F32;
            }
            uint64_t final_bytes = (uint64_t)info->n_heads * (uint64_t)info->dim *
                                   doze_type_row_bytes(slot->final_type, (uint64_t)info->head_dim);
            bytes = final_bytes > t->n_bytes ? final_bytes : t->n_bytes;
            uint64_t scratch = t->n_bytes + t->ne[0] * sizeof(float); /* raw copy + one row */
            if (scratch > plan->scratch_size) plan->scratch_size = (size_t)scratch;
        } else if (strstr(specs[i].name, "ffn_down") != NULL) {
            /* per-FFN-block column blocks (an FFN block is whole blocks of
             * the type per row, model_ffn_block_of, so the type is kept);
             * same size */
            slot->kind = SLOT_FFN_BLOCKS;
            uint64_t scratch = t->n_bytes;
            if (scratch > plan->scratch_size) plan->scratch_size = (size_t)scratch;
        } else if (!is_vec && model_x4_fits((int)t->type, specs[i].rows, specs[i].cols) &&
                   info->head_dim % 4 == 0) {
            /* repacked in place, 4 rows at a time (views of whole heads stay
             * groups of 4: head_dim % 4 == 0) */
            slot->kind = SLOT_INTERLEAVE4;
            uint64_t scratch = 4 * doze_type_row_bytes((int)t->type, specs[i].cols);
            if (scratch > plan->scratch_size) plan->scratch_size = (size_t)scratch;
        }
        slot->arena_offset = (size_t)arena;
        slot->copy_offset = (size_t)(arena + copy_at);
        arena += (bytes + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
        if (arena > (uint64_t)SIZE_MAX / 2) {
            st = doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "weights of %llu bytes cannot be addressed",
                           (unsigned long long)arena);
            break;
        }
    }
    free(specs);
    if (st != DOZE_OK) {
        model_plan_free(plan);
        return st;
    }
    plan->n_slots = (size_t)n;
    plan->arena_size = (size_t)arena;
    qsort(plan->slots, plan->n_slots, sizeof *plan->slots, slot_by_offset);
    return DOZE_OK;
}

/* ---- assemble -------------------------------------------------------------- */

/* types whose matrices are repacked to the x4 layout at load */
int model_interleaves(int type) {
    const doze_type_traits *t = doze_type_traits_of(type);
    return t && t->x4_cols > 0;
}

int model_x4_fits(int type, uint64_t rows, uint64_t cols) {
    const doze_type_traits *t = doze_type_traits_of(type);
    return t && t->x4_cols > 0 && rows % 4 == 0 && cols % (uint64_t)t->x4_cols == 0;
}

static const doze_tensor_slot *find_slot(const doze_model_plan *plan, const char *name) {
    for (size_t i = 0; i < plan->n_slots; i++)
        if (strcmp(plan->slots[i].src->name.data, name) == 0) return &plan->slots[i];
    return NULL;
}

/* A matrix (model_x4_fits) repacked in place to its type's x4 layout
 * (kernels.h), each group of 4 rows on its own. tmp: 4 rows' bytes. */
static void interleave4(uint8_t *base, int type, uint64_t rows, uint64_t cols, uint8_t *tmp) {
    const doze_type_traits *tt = doze_type_traits_of(type);
    const size_t row = (size_t)doze_type_row_bytes(type, cols);
    for (uint64_t g = 0; g < rows / 4; g++) tt->x4_pack(base + (size_t)g * 4 * row, cols, tmp);
}

void model_slot_finalize(const doze_model_info *info, doze_tensor_slot *s, uint8_t *arena,
                         uint8_t *scratch) {
    const gguf_tensor *t = s->src;
    /* values the type's x4 kernels take not (f16 inf/nan halves, q8_0
     * inf/nan scales): no x4 for this tensor */
    const doze_type_traits *ft = doze_type_traits_of(s->final_type);
    if (s->final_type == (int)t->type && s->kind != SLOT_NORM_F16 && s->kind != SLOT_PLAIN && ft->x4_refuses)
        s->x4_off = ft->x4_refuses(arena + s->copy_offset, t->n_bytes);
    if (s->kind == SLOT_NORM_F16) {
        float *dst = (float *)(arena + s->arena_offset);
        const uint16_t *staged = (const uint16_t *)(arena + s->copy_offset);
        for (uint64_t i = 0; i < t->ne[0]; i++) dst[i] = doze_f16_to_f32(staged[i]);
    }
    if (s->neox) {
        /* before any repacking: whole rows (or f32 entries) move */
        const int vec = t->ne[1] == 1;
        arch_neox_to_adjacent(arena + (vec ? s->arena_offset : s->copy_offset), vec ? t->ne[0] : t->ne[1],
                              vec ? 4u : doze_type_row_bytes((int)t->type, t->ne[0]), info->head_dim, info->rope_dim,
                              scratch);
    }
    if (s->kind == SLOT_INTERLEAVE4) {
        if (!s->x4_off) interleave4(arena + s->arena_offset, (int)t->type, t->ne[1] * t->ne[2], t->ne[0], scratch);
    } else if (s->kind == SLOT_FFN_BLOCKS) {
        /* W(dim, hidden) row-major -> per block j: (dim, width_j), blocks in
         * order; then each block x4-interleaved where that applies */
        const int dim = info->dim, hid = info->hidden_dim, fb = info->ffn_block;
        const int nb = ffn_n_blocks(hid, fb);
        const int type = (int)t->type;
        const size_t src_row = (size_t)doze_type_row_bytes(type, (uint64_t)hid);
        memcpy(scratch, arena + s->copy_offset, (size_t)t->n_bytes);
        uint8_t *dst = arena + s->arena_offset;
        size_t off = 0;
        for (int j = 0; j < nb; j++) {
            const int w = ffn_block_width(hid, fb, j);
            const size_t seg = (size_t)doze_type_row_bytes(type, (uint64_t)w);
            const size_t col = (size_t)doze_type_row_bytes(type, (uint64_t)j * fb);
            for (int r = 0; r < dim; r++)
                memcpy(dst + off + (size_t)r * seg, scratch + (size_t)r * src_row + col, seg);
            if (model_x4_fits(type, (uint64_t)dim, (uint64_t)w) && !s->x4_off) {
                uint8_t tmp[4 * 256 * 4]; /* 4 rows of <= 256 f32 */
                interleave4(dst + off, type, (uint64_t)dim, (uint64_t)w, tmp);
            }
            off += (size_t)dim * seg;
        }
    } else if (s->kind == SLOT_HEAD_BLOCKS) {
        /* W(dim, n_heads * head_dim) row-major -> (n_heads, dim, head_dim) */
        const int dim = info->dim, hd = info->head_dim, nh = info->n_heads;
        const doze_type_traits *src_t = doze_type_traits_of((int)t->type);
        const doze_type_traits *dst_t = doze_type_traits_of(s->final_type);
        size_t src_row = (size_t)doze_type_row_bytes((int)t->type, t->ne[0]);
        memcpy(scratch, arena + s->copy_offset, (size_t)t->n_bytes);
        uint8_t *dst = arena + s->arena_offset;
        if (s->final_type == (int)t->type) {
            /* same type: move whole blocks (head_dim is a multiple of the block size) */
            size_t seg = (size_t)doze_type_row_bytes(s->final_type, (uint64_t)hd);
            for (int h = 0; h < nh; h++)
                for (int r = 0; r < dim; r++)
                    memcpy(dst + ((size_t)h * dim + r) * seg, scratch + (size_t)r * src_row + h * seg,
                           seg);
        } else {
            /* widen each row, then cut it into heads */
            float *row = (float *)(scratch + (size_t)t->n_bytes);
            size_t seg = (size_t)doze_type_row_bytes(s->final_type, (uint64_t)hd);
            for (int r = 0; r < dim; r++) {
                src_t->dequantize_row(scratch + (size_t)r * src_row, row, (int64_t)t->ne[0]);
                for (int h = 0; h < nh; h++)
                    dst_t->quantize_row(row + (size_t)h * hd, dst + ((size_t)h * dim + r) * seg, hd);
            }
        }
        /* each head's (dim, head_dim) matrix x4 where it fits (the
         * raw copy in scratch is no longer needed: 4 rows of tmp) */
        if (model_x4_fits(s->final_type, (uint64_t)dim, (uint64_t)hd) && !s->x4_off) {
            const size_t seg = (size_t)doze_type_row_bytes(s->final_type, (uint64_t)hd);
            for (int h = 0; h < nh; h++)
                interleave4(dst + (size_t)h * dim * seg, s->final_type, (uint64_t)dim, (uint64_t)hd, scratch);
        }
    }
}

static doze_matrix wire_matrix(doze_model *m, const doze_tensor_slot *s) {
    doze_matrix w;
    w.type = s->final_type;
    w.cols = (int)s->src->ne[0];
    w.rows = (int)(s->src->ne[1] * s->src->ne[2]); /* a stack of experts: all their rows */
    w.data = m->arena + s->arena_offset;
    w.layout = s->kind == SLOT_INTERLEAVE4 && !s->x4_off;
    return w;
}

/* the per-head blocks of a HEAD_BLOCKS slot into out(n_heads) */
static void wire_head_blocks(doze_model *m, const doze_tensor_slot *s, doze_matrix *out) {
    const doze_model_info *c = &m->info;
    size_t seg = (size_t)doze_type_row_bytes(s->final_type, (uint64_t)c->head_dim);
    for (int h = 0; h < c->n_heads; h++) {
        out[h].type = s->final_type;
        out[h].rows = c->dim;
        out[h].cols = c->head_dim;
        out[h].data = m->arena + s->arena_offset + (size_t)h * (size_t)c->dim * seg;
        out[h].layout = model_x4_fits(s->final_type, (uint64_t)c->dim, (uint64_t)c->head_dim) && !s->x4_off;
    }
}

/* the per-FFN-block matrices of a FFN_BLOCKS slot into out(n_ffn_blocks) */
static void wire_ffn_blocks(doze_model *m, const doze_tensor_slot *s, doze_matrix *out) {
    const doze_model_info *c = &m->info;
    size_t off = 0;
    for (int j = 0; j < m->n_ffn_blocks; j++) {
        const int w = ffn_block_width(c->hidden_dim, c->ffn_block, j);
        out[j].type = s->final_type;
        out[j].rows = c->dim;
        out[j].cols = w;
        out[j].data = m->arena + s->arena_offset + off;
        out[j].layout = model_x4_fits(s->final_type, (uint64_t)c->dim, (uint64_t)w) && !s->x4_off;
        off += (size_t)c->dim * (size_t)doze_type_row_bytes(s->final_type, (uint64_t)w);
    }
}

doze_status model_assemble(doze_model *m, const gguf_header *h, const doze_model_plan *plan,
                           doze_error *err) {
    doze_model_info *c = &m->info;
    char nm[64];
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    m->wo_heads = calloc((size_t)c->n_layers * (size_t)c->n_heads, sizeof *m->wo_heads);
    m->n_ffn_blocks = ffn_n_blocks(c->hidden_dim, c->ffn_block);
    m->down_blks = calloc((size_t)c->n_layers * (size_t)m->n_ffn_blocks, sizeof *m->down_blks);
    size_t half = (size_t)(c->rope_dim / 2);
    size_t rope_n = (size_t)c->context_length * (half ? half : 1);
    m->rope_cos = malloc(rope_n * sizeof(float));
    m->rope_sin = malloc(rope_n * sizeof(float));
    if (!m->layers || !m->wo_heads || !m->down_blks || !m->rope_cos || !m->rope_sin)
        return doze_fail(err, DOZE_ERR_OUT_OF_MEMORY, "out of memory for %d layers and RoPE tables",
                         c->n_layers);

    m->token_embd = wire_matrix(m, find_slot(plan, "token_embd.weight"));
    m->output_norm = (const float *)(m->arena + find_slot(plan, "output_norm.weight")->arena_offset);
    m->output = c->tied_output ? m->token_embd : wire_matrix(m, find_slot(plan, "output.weight"));
    int wtype = -1;
    uint64_t layer_bytes = 0;
    for (int l = 0; l < c->n_layers; l++) {
        doze_layer *L = &m->layers[l];
#define VEC(field, suffix) \
        snprintf(nm, sizeof nm, "blk.%d." suffix, l); \
        L->field = (const float *)(m->arena + find_slot(plan, nm)->arena_offset);
#define MAT(field, suffix) \
        snprintf(nm, sizeof nm, "blk.%d." suffix, l); \
        L->field = wire_matrix(m, find_slot(plan, nm)); \
        layer_bytes += find_slot(plan, nm)->src->n_bytes; \
        if (wtype < 0) wtype = L->field.type;
        VEC(attn_norm, "attn_norm.weight");
        VEC(ffn_norm, "ffn_norm.weight");
        if (c->qkv_bias) {
            VEC(bq, "attn_q.bias");
            VEC(bk, "attn_k.bias");
            VEC(bv, "attn_v.bias");
        }
        if (c->qk_norm) {
            VEC(q_norm, "attn_q_norm.weight");
            VEC(k_norm, "attn_k_norm.weight");
        }
        MAT(wq, "attn_q.weight");
        MAT(wk, "attn_k.weight");
        MAT(wv, "attn_v.weight");
        snprintf(nm, sizeof nm, "blk.%d.attn_output.weight", l);
        L->wo_head = m->wo_heads + (size_t)l * (size_t)c->n_heads;
        wire_head_blocks(m, find_slot(plan, nm), L->wo_head);
        layer_bytes += (uint64_t)c->n_heads * (uint64_t)c->dim *
                       doze_type_row_bytes(L->wo_head[0].type, (uint64_t)c->head_dim);
        if (c->n_experts) {
            MAT(w_router, "ffn_gate_inp.weight");
            const uint64_t before = layer_bytes;
            MAT(w_gate, "ffn_gate_exps.weight");
            MAT(w_up, "ffn_up_exps.weight");
            MAT(w_down, "ffn_down_exps.weight");
            /* a token reads the router and k of the experts */
            layer_bytes = before + (layer_bytes - before) / (uint64_t)c->n_experts * (uint64_t)c->n_experts_used;
            L->w_down_blk = NULL;
            continue;
        }
        MAT(w_gate, "ffn_gate.weight");
        MAT(w_up, "ffn_up.weight");
        snprintf(nm, sizeof nm, "blk.%d.ffn_down.weight", l);
        L->w_down_blk = m->down_blks + (size_t)l * (size_t)m->n_ffn_blocks;
        wire_ffn_blocks(m, find_slot(plan, nm), L->w_down_blk);
        layer_bytes += find_slot(plan, nm)->src->n_bytes;
#undef VEC
#undef MAT
    }
    c->weight_type = wtype;
    c->layer_weight_bytes = layer_bytes;
    uint64_t params = 0, bytes = 0;
    for (size_t i = 0; i < plan->n_slots; i++) {
        const gguf_tensor *t = plan->slots[i].src;
        params += t->ne[0] * t->ne[1];
        bytes += t->n_bytes;
    }
    c->n_params = params;
    c->weight_bytes = bytes;

    /* RoPE: angle(pos, i) = pos * theta^(-2i / rope_dim), in double so that
     * every platform's libm rounds to the same float; positions divided by
     * a linear scaling factor, frequencies by Llama 3's per-pair factors. */
    const float *factors =
        c->rope_freq_factors ? (const float *)(m->arena + find_slot(plan, "rope_freqs.weight")->arena_offset) : NULL;
    for (int pos = 0; pos < c->context_length; pos++) {
        for (size_t i = 0; i < half; i++) {
            double freq = 1.0 / pow((double)c->rope_theta, (double)(2 * i) / (double)c->rope_dim);
            double f = (double)(float)freq;
            if (factors) f /= (double)factors[i];
            double angle = (c->rope_scale != 1.0f ? (double)pos / (double)c->rope_scale : (double)pos) * f;
            m->rope_cos[(size_t)pos * half + i] = (float)cos(angle);
            m->rope_sin[(size_t)pos * half + i] = (float)sin(angle);
        }
    }

    doze_status st = model_meta_from_gguf(h, &m->meta, &m->meta_bytes, err);
    if (st != DOZE_OK) return st;
    st = tokenizer_from_gguf(h, &m->tok, err);
    /* no vocabulary at all: a model without a tokenizer (ids in, ids out);
     * one that is there but incomplete (a BPE vocabulary without merges) is
     * an error, not a silent loss of the tokenizer */
    if (st == DOZE_ERR_MISSING && !gguf_find_kv(h, "tokenizer.ggml.model") && !gguf_find_kv(h, "tokenizer.ggml.tokens")) {
        m->tok = NULL;
        doze_error_clear(err);
    } else if (st != DOZE_OK) {
        doze_error_prefix(err, "tokenizer");
        return st;
    } else {
        if (tokenizer_vocab_size(m->tok) != c->vocab_size)
            return doze_fail(err, DOZE_ERR_BAD_SHAPE,
                             "tokenizer has %d tokens but token_embd has %d rows",
                             tokenizer_vocab_size(m->tok), c->vocab_size);
        c->bos_id = tokenizer_bos(m->tok);
        c->eos_id = tokenizer_eos(m->tok);
        c->unk_id = tokenizer_unk(m->tok);
    }
    return DOZE_OK;
}

void doze_model_free(doze_model *m) {
    if (!m) return;
    pool_free(m->pool);
    tokenizer_free(m->tok);
    free(m->meta);
    free(m->layers);
    free(m->wo_heads);
    free(m->down_blks);
    free(m->rope_cos);
    free(m->rope_sin);
    free(m->arena);
    free(m);
}

const doze_model_info *doze_model_get_info(const doze_model *m) { return m ? &m->info : NULL; }

doze_status doze_model_set_threads(doze_model *m, int n_threads, doze_error *err) {
    if (!m) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no model");
    doze_pool *p = NULL;
    if (n_threads != 1) {
        doze_status st = pool_new(n_threads, &p, err);
        if (st != DOZE_OK) return st; /* the old pool stays */
    }
    pool_free(m->pool);
    m->pool = p;
    return DOZE_OK;
}

int doze_model_threads(const doze_model *m) { return m ? pool_threads(m->pool) : 1; }

/* ---- typed products ------------------------------------------------------------ */

/* A prepared input: one vector x(cols) in each activation form a product
 * may take besides plain floats: its q8_0 blocks, then x rounded to f16,
 * then x rounded to bf16, each region (and so each whole input) a multiple
 * of 16 bytes. */
static size_t align16(size_t n) { return (n + 15) & ~(size_t)15; }
static size_t q8_region_bytes(int cols) {
    return align16((size_t)(cols + DOZE_QK8_0 - 1) / DOZE_QK8_0 * sizeof(doze_block_q8_0));
}
static size_t float_region_bytes(int cols) { return align16((size_t)cols * sizeof(float)); }

size_t model_input_bytes(int cols) { return q8_region_bytes(cols) + 2 * float_region_bytes(cols); }

size_t model_input_area_bytes(const doze_model *m) {
    const doze_model_info *c = &m->info;
    int widest = c->dim > c->hidden_dim ? c->dim : c->hidden_dim;
    if (c->n_heads * c->head_dim > widest) widest = c->n_heads * c->head_dim;
    size_t a = model_input_bytes(widest);
    const size_t heads = (size_t)c->n_heads * model_input_bytes(c->head_dim);
    const size_t blocks = (size_t)m->n_ffn_blocks * model_input_bytes(c->ffn_block);
    if (heads > a) a = heads;
    return blocks > a ? blocks : a;
}

/* where form act_type of a prepared input of cols values starts */
static size_t form_offset(int act_type, int cols) {
    if (act_type == DOZE_TYPE_Q8_0) return 0;
    return q8_region_bytes(cols) + (act_type == DOZE_TYPE_BF16 ? float_region_bytes(cols) : 0);
}

/* dst = x(cols) in the activation form act_type (not DOZE_TYPE_F32) */
static void make_form(const doze_model *m, int act_type, const float *x, void *dst, int cols) {
    if (act_type == DOZE_TYPE_Q8_0)
        m->kern->quantize_q8_0(x, dst, cols);
    else
        m->kern->round_input(act_type, x, dst, cols);
}

/* one part of a split matvec: rows [b, e) of W */
typedef struct {
    doze_matvec_fn mv;
    float *y;
    const doze_matrix *w;
    const void *x;
} matvec_job;

static void matvec_part(void *args, int b, int e, int part) {
    (void)part;
    const matvec_job *j = args;
    doze_matrix v = model_rows(j->w, b, e - b);
    j->mv(j->y + b, v.data, j->x, e - b, v.cols);
}

void model_matvec_prepared(const doze_model *m, float *y, const doze_matrix *w, const float *x, const void *xq) {
    const doze_type_traits *t = doze_type_traits_of(w->type); /* checked at load */
    matvec_job j = {t->products[m->kern->set]->matvec[w->layout], y, w,
                    t->act_type == DOZE_TYPE_F32 ? (const void *)x
                                                 : (const uint8_t *)xq + form_offset(t->act_type, w->cols)};
    pool_run(m->pool, matvec_part, &j, w->rows, MODEL_ROW_ALIGN, model_min_part_rows(w->cols), 0);
}

void model_prepare_input(const doze_model *m, const doze_matrix *const *w, int n, const float *x, void *xq) {
    uint32_t made = 0; /* bit act_type: that form is in xq */
    for (int i = 0; i < n; i++) {
        const int a = doze_type_traits_of(w[i]->type)->act_type;
        if (a == DOZE_TYPE_F32 || (made >> a & 1u)) continue;
        made |= 1u << a;
        make_form(m, a, x, (uint8_t *)xq + form_offset(a, w[i]->cols), w[i]->cols);
    }
}

void model_matvec(const doze_model *m, float *y, const doze_matrix *w, const float *x,
                  void *xq_scratch) {
    model_prepare_input(m, &w, 1, x, xq_scratch);
    model_matvec_prepared(m, y, w, x, xq_scratch);
}

doze_matrix model_rows(const doze_matrix *w, int first, int n) {
    doze_matrix v = *w;
    size_t row = (size_t)doze_type_row_bytes(w->type, (uint64_t)w->cols);
    v.rows = n;
    v.data = (const uint8_t *)w->data + (size_t)first * row;
    return v;
}

/* The FFN's two parallel phases: gate/up over runs of running blocks (split
 * by blocks), the down projection (split by output rows, each part adding
 * the running blocks in block order to its rows of x). */
typedef struct {
    const doze_model *m;
    const doze_layer *L;
    const uint8_t *blk_on;
    const float *xn;
    float *hb, *hb2, *tmp, *x;
    const void *xq; /* xn prepared (gate/up), then h prepared block by block (down) */
    float *block_norm;
} ffn_job;

/* h = silu(gate xn) * up xn over the running blocks number [ob, oe) (in
 * block order, counting running blocks only: parts share the work that
 * runs, wherever the skipped blocks are) */
static void ffn_gate_up_part(void *args, int ob, int oe, int part) {
    (void)part;
    const ffn_job *f = args;
    const doze_model_info *c = &f->m->info;
    const int hid = c->hidden_dim, fb = c->ffn_block, nb = f->m->n_ffn_blocks;
    int j = 0, o = 0; /* block j is the o-th running one */
    for (; j < nb; j++)
        if (!f->blk_on || f->blk_on[j]) {
            if (o == ob) break;
            o++;
        }
    while (o < oe) { /* j: running, number o */
        int e = j + 1, oe_run = o + 1;
        while (e < nb && oe_run < oe && (!f->blk_on || f->blk_on[e])) e++, oe_run++;
        const int r0 = j * fb, r1 = e * fb < hid ? e * fb : hid;
        doze_matrix wg = model_rows(&f->L->w_gate, r0, r1 - r0), wu = model_rows(&f->L->w_up, r0, r1 - r0);
        model_matvec_prepared(f->m, f->hb + r0, &wg, f->xn, f->xq);  /* (r1 - r0) */
        model_matvec_prepared(f->m, f->hb2 + r0, &wu, f->xn, f->xq); /* (r1 - r0) */
        f->m->kern->swiglu(f->hb + r0, f->hb + r0, f->hb2 + r0, r1 - r0);
        o = oe_run;
        j = e; /* on to the next running block */
        while (j < nb && f->blk_on && !f->blk_on[j]) j++;
    }
}

/* x[b, e) += W_down_j[b, e) h_j, the running blocks in block order */
static void ffn_down_part(void *args, int b, int e, int part) {
    (void)part;
    const ffn_job *f = args;
    const doze_model_info *c = &f->m->info;
    const int dim = c->dim, nb = f->m->n_ffn_blocks, fb = c->ffn_block;
    const size_t per_block = model_input_bytes(fb); /* a block's prepared h */
    for (int j = 0; j < nb; j++) {
        if (f->blk_on && !f->blk_on[j]) {
            if (f->block_norm) f->block_norm[j] = 0.0f;
            continue;
        }
        doze_matrix v = model_rows(&f->L->w_down_blk[j], b, e - b);
        model_matvec_prepared(f->m, f->tmp + b, &v, f->hb + (size_t)j * fb,
                              (const uint8_t *)f->xq + (size_t)j * per_block); /* (e - b) */
        if (f->block_norm) { /* one part (b = 0, e = dim) */
            double ss = 0;
            for (int i = 0; i < dim; i++) ss += (double)f->tmp[i] * f->tmp[i];
            f->block_norm[j] = (float)sqrt(ss);
        }
        f->m->kern->add(f->x + b, f->tmp + b, e - b);
    }
}

void model_ffn(const doze_model *m, int layer, float *x, const uint8_t *blk_on, const float *xn, float *hb,
               float *hb2, float *tmp, void *xq, float *block_norm) {
    const doze_model_info *c = &m->info;
    const doze_layer *L = &m->layers[layer];
    const int dim = c->dim, hid = c->hidden_dim, nb = m->n_ffn_blocks, fb = c->ffn_block;
    ffn_job f = {m, L, blk_on, xn, hb, hb2, tmp, x, xq, block_norm};
    /* h = silu(gate xn) * up xn over each run of running blocks (xn = ffn_norm(x), given;
     * quantized once for all of them); a run cut between two parts gives the
     * same rows (views of whole x4 groups: fb % 16 == 0) */
    const doze_matrix *gu[2] = {&L->w_gate, &L->w_up};
    model_prepare_input(m, gu, 2, xn, xq);
    const int min_blocks = (MODEL_MIN_PART_MACS + 2 * fb * dim - 1) / (2 * fb * dim);
    int running = nb;
    for (int j = 0; blk_on && j < nb; j++) running -= !blk_on[j];
    pool_run(m->pool, ffn_gate_up_part, &f, running, 1, min_blocks, 0);
    /* h prepared block by block for the down projection (a block's values
     * are whole q8_0 blocks for the quantized types: fb % 32 == 0) */
    const size_t per_block = model_input_bytes(fb);
    for (int j = 0; j < nb; j++)
        if (!blk_on || blk_on[j]) {
            const doze_matrix *wd = &L->w_down_blk[j];
            model_prepare_input(m, &wd, 1, hb + (size_t)j * fb, (uint8_t *)xq + (size_t)j * per_block);
        }
    pool_run(m->pool, ffn_down_part, &f, dim, MODEL_ROW_ALIGN, model_min_part_rows(hid), block_norm ? 1 : 0);
}

/* one part of a split matmul: rows [b, e) of W for every token */
typedef struct {
    doze_matmul_fn mm;
    float *y;
    int ldy;
    const doze_matrix *w;
    const void *x;
    size_t ldx; /* bytes */
    int n;
} matmul_job;

static void matmul_part(void *args, int b, int e, int part) {
    (void)part;
    const matmul_job *j = args;
    doze_matrix v = model_rows(j->w, b, e - b);
    j->mm(j->y + b, j->ldy, v.data, j->x, j->ldx, j->n, e - b, v.cols);
}

typedef struct {
    model_token_fn fn;
    void *args;
} tokens_job;

static void tokens_part(void *args, int b, int e, int part) {
    (void)part;
    const tokens_job *j = args;
    for (int t = b; t < e; t++) j->fn(j->args, t);
}

/* Fewest floats worth a part of their own for elementwise work (a
 * dispatch costs a few microseconds, a float a nanosecond or less). */
#define MODEL_MIN_PART_VALUES 8192

void model_for_tokens(const doze_model *m, int n, int values, model_token_fn fn, void *args) {
    tokens_job j = {fn, args};
    const int v = values > 0 ? values : 1;
    pool_run(m->pool, tokens_part, &j, n, 1, (MODEL_MIN_PART_VALUES + v - 1) / v, 0);
}

/* one token's activation form for model_matmul */
typedef struct {
    const doze_model *m;
    int act_type, cols, ldx;
    const float *x;
    uint8_t *dst;
    size_t xs; /* bytes per token's form */
} form_job;

static void form_token(void *args, int t) {
    const form_job *f = args;
    make_form(f->m, f->act_type, f->x + (size_t)t * f->ldx, f->dst + (size_t)t * f->xs, f->cols);
}

/* Y(n, w->rows) (stride ldy) = X(n, w->cols) (stride ldx) @ W^T, each
 * token's x in W's activation form, as model_matvec prepares it.
 * scratch: n * max(cols * 4, (cols/32) * 34) bytes. */
void model_matmul(const doze_model *m, float *y, int ldy, const doze_matrix *w, const float *x, int ldx,
               int n, void *scratch) {
    const doze_type_traits *t = doze_type_traits_of(w->type);
    matmul_job j = {t->products[m->kern->set]->matmul[w->layout], y, ldy, w, x, (size_t)ldx * sizeof(float), n};
    if (t->act_type != DOZE_TYPE_F32) {
        const size_t xs = doze_type_act_bytes(t, w->cols);
        form_job f = {m, t->act_type, w->cols, ldx, x, scratch, xs};
        model_for_tokens(m, n, w->cols, form_token, &f);
        j.x = scratch;
        j.ldx = xs;
    }
    /* rows split among the threads: each token's row of Y is its matvec's bits whatever the cut */
    pool_run(m->pool, matmul_part, &j, w->rows, MODEL_ROW_ALIGN, model_min_part_rows(w->cols * n), 0);
}

void model_dequantize_row(const doze_matrix *w, int r, float *out) {
    const doze_type_traits *t = doze_type_traits_of(w->type);
    const size_t row = (size_t)doze_type_row_bytes(w->type, (uint64_t)w->cols);
    if (w->layout) {
        t->x4_row((const uint8_t *)w->data + (size_t)(r / 4) * 4 * row, r % 4, (uint64_t)w->cols, out);
        return;
    }
    t->dequantize_row((const uint8_t *)w->data + (size_t)r * row, out, w->cols);
}

void model_embed(const doze_model *m, int token, float *out) {
    model_dequantize_row(&m->token_embd, token, out);
}

/* ---- tokenizer accessors ----------------------------------------------------------- */

doze_status doze_tokenize(const doze_model *m, const char *text, size_t len, int flags,
                          int32_t *out, int cap, int *n_out, doze_error *err) {
    if (!m || (!text && len)) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no model or text");
    if (!m->tok) return doze_fail(err, DOZE_ERR_MISSING, "the model has no tokenizer");
    return tokenizer_encode(m->tok, text ? text : "", len, flags, out, cap, n_out, err);
}

doze_status doze_tokenize_literal(const doze_model *m, const char *text, size_t len, int flags, const size_t *literal,
                                  int n_literal, int32_t *out, int cap, int *n_out, doze_error *err) {
    if (!m || (!text && len)) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no model or text");
    if (!m->tok) return doze_fail(err, DOZE_ERR_MISSING, "the model has no tokenizer");
    return tokenizer_encode_literal(m->tok, text ? text : "", len, flags, literal, n_literal, out, cap, n_out, err);
}

int doze_token_is_eog(const doze_model *m, int token) {
    return m && m->tok ? tokenizer_is_eog(m->tok, token) : 0;
}

doze_status doze_token_to_piece(const doze_model *m, int prev, int token, char *buf, size_t cap,
                                size_t *len, doze_error *err) {
    if (!m) return doze_fail(err, DOZE_ERR_INVALID_ARGUMENT, "no model");
    if (!m->tok) return doze_fail(err, DOZE_ERR_MISSING, "the model has no tokenizer");
    return tokenizer_decode(m->tok, prev, token, buf, cap, len, err);
}

void model_use_kernels(doze_model *m, int kernel_set) {
    m->kern = kernel_set == DOZE_KERNELS_REFERENCE ? &doze_kernels_reference : &doze_kernels_simd;
}
