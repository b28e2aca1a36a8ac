/* Making GGUF files: importing llama2.c checkpoints, re-typing a GGUF, and
 * seeded random models. Each fills a gguf_builder (a writer plus the tensor
 * buffers it owns); the caller writes it with gguf_writer_write. */
#ifndef DOZE_CONVERT_H
#define DOZE_CONVERT_H

#include <stddef.h>
#include <stdint.h>

#include "doze.h"
#include "gguf.h"

typedef struct {
    gguf_writer *w;
    void **bufs; /* tensor data owned by the builder */
    size_t n_bufs, cap_bufs;
} gguf_builder;

doze_status gguf_builder_init(gguf_builder *b, doze_error *err);
void gguf_builder_free(gguf_builder *b);
/* Hands p (malloc'd) to the builder, which frees it (also on failure). */
doze_status gguf_builder_keep(gguf_builder *b, void *p, doze_error *err);
/* Adds a tensor given as f32 values, stored as `type` when it is a matrix
 * whose rows fit the type's blocks; vectors (and rows that do not fit) stay
 * f32. ne as in GGUF (ne[0] = columns). */
doze_status gguf_builder_add_f32(gguf_builder *b, const char *name, uint32_t n_dims,
                                 const uint64_t *ne, const float *values, int type,
                                 doze_error *err);

/* The llama.* metadata of a model of this shape (rms eps 1e-5, rope theta
 * 10000, rope over the whole head). */
doze_status gguf_builder_set_llama(gguf_builder *b, const char *name, int dim, int hidden_dim,
                                   int n_layers, int n_heads, int n_kv_heads, int context_length,
                                   doze_error *err);
/* llama.cpp's mixture keys: ARCH.expert_count = n_experts and
 * ARCH.expert_used_count = k; expert_hidden > 0 also writes
 * ARCH.expert_feed_forward_length (qwen3moe's experts' width). */
doze_status gguf_builder_set_experts(gguf_builder *b, const char *arch, int n_experts, int k, int expert_hidden,
                                     doze_error *err);
/* The tokenizer.ggml.* block (model "llama"): pieces are UTF-8 (U+2581 for
 * spaces), types as in tokenizer.h. */
doze_status gguf_builder_set_tokenizer(gguf_builder *b, int n, const char *const *pieces,
                                       const float *scores, const int32_t *types, int bos, int eos,
                                       int unk, doze_error *err);

/* llama2.c legacy (v0) checkpoint + tokenizer.bin -> GGUF (llama). */
doze_status convert_llama2c(const uint8_t *ckpt, size_t ckpt_n, const uint8_t *tok, size_t tok_n,
                            int type, const char *name, gguf_builder *out, doze_error *err);

/* Conversion targets: a doze_type (every matrix in that type; where a
 * matrix's rows are not whole blocks of it: convert_tensor_type's
 * fallbacks), or this mix: llama.cpp's Q4_K_M choice of types, tensor by tensor
 * (convert_tensor_type). */
#define DOZE_CONVERT_Q4_K_M 1000

/* "f32" ... "q6_k", "iq4_xs", "bf16" (doze_type_from_name), or "q4_k_m"; -1 if unknown. */
int convert_type_from_name(const char *name);

/* The type tensor `name` (n_dims, ne as in GGUF) is stored in when a model
 * of n_layers layers is converted to `target` (tied: no output.weight, the
 * embedding is the classifier too). Q4_K_M, as llama.cpp picks it for a
 * llama model: q6_k for the classifier (output.weight, or token_embd when
 * tied), for attn_v and ffn_down in the layers use_more_bits picks (the
 * first and last eighth, and every third between); q4_k for every other
 * matrix. A matrix whose rows are not whole blocks of its type falls back
 * as llama.cpp's does: q4_k to q5_0, q5_k to q5_1, q6_k to q8_0, q2_k,
 * q3_k and iq4_xs to iq4_nl, f16 when
 * the rows are not whole 32-value blocks either (so a model of dim 576 gets
 * llama.cpp's mix); other types to f32. Vectors stay f32. */
int convert_tensor_type(int target, const char *name, uint32_t n_dims, const uint64_t *ne, int n_layers,
                        int tied);

/* llama.cpp's llama_ftype for a conversion target (general.file_type:
 * f16 1, q8_0 7, q4_k_m 15, a single K-quant its _S label ...); -1 if none. */
int convert_file_type(int target);

/* A parsed GGUF file held in memory -> the same model with matrices in
 * `type`; general.file_type is set to the target's (convert_file_type) and
 * general.quantization_version to 2, as llama.cpp's quantizer writes them. */
doze_status convert_retype(const uint8_t *file, size_t n, int type, gguf_builder *out,
                           doze_error *err);

typedef struct {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, context_length;
    uint64_t seed;
    int type; /* a conversion target (convert_type_from_name) */
    const char *arch; /* NULL or "llama"; "llama3" (llama with rope theta 500000 and
                         Llama 3.1's rope_freqs factors), "qwen2" (Q/K/V biases, NEOX
                         RoPE, theta 1e6), "qwen3" (q/k norms, NEOX RoPE), "qwen3moe"
                         (qwen3 with experts) */
    int head_dim;     /* 0: dim / n_heads; else written as attention.key_length */
    int untied;       /* 1: a classifier of its own (output.weight); 0: tied to the embedding */
    float embd_scale; /* the embedding's (and an untied classifier's) values are uniform in
                         +-embd_scale (0: 1); the logits scale with it, so a small one gives
                         soft next-token distributions */
    int n_experts;    /* > 0: each FFN a mixture of n_experts experts of hidden_dim
                         channels (llama, qwen3moe; qwen3moe needs them) */
    int n_experts_used; /* the top-k of a mixture, in [1, n_experts] */
} doze_init_params;

/* The ARCH.* metadata of a model of this shape (rms eps 1e-5 for llama,
 * 1e-6 for qwen; head_dim 0: dim / n_heads, else written as key/value
 * length). */
doze_status gguf_builder_set_arch(gguf_builder *b, const char *arch, const char *name, int dim, int hidden_dim,
                                  int n_layers, int n_heads, int n_kv_heads, int head_dim, int context_length,
                                  float rope_theta, doze_error *err);

/* A seeded random model of any shape and supported architecture, with
 * llama.cpp's tensor names and keys, and a synthetic tokenizer (<unk>,
 * <s>, </s>, the 256 byte tokens, then made-up words). */
doze_status convert_init_random(const doze_init_params *p, gguf_builder *out, doze_error *err);

#endif
