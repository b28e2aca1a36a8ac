/* Doze — a transformer runtime for the web (C core).
 *
 * The public C API: opaque handles, params structs with *_default_params(),
 * and status codes with messages. Every function that can fail returns a
 * doze_status and fills a caller-owned doze_error (which may be NULL).
 * Nothing here exits, aborts or keeps global state.
 */
#ifndef DOZE_H
#define DOZE_H

#include <stddef.h>
#include <stdint.h>

/* The library's version: the same string as js/package.json's "version"
 * (a test checks that they agree); `doze --version` prints it. */
#define DOZE_VERSION "0.1.0"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status codes -------------------------------------------------------- */

typedef enum {
    DOZE_OK = 0,
    DOZE_ERR_INVALID_ARGUMENT = 1, /* a caller passed something unusable */
    DOZE_ERR_BAD_MAGIC = 2,        /* not a GGUF / llama2.c file */
    DOZE_ERR_UNSUPPORTED_VERSION = 3,
    DOZE_ERR_TRUNCATED = 4,        /* the bytes ended before the file did */
    DOZE_ERR_BAD_FORMAT = 5,       /* malformed structure (sizes, offsets, duplicates) */
    DOZE_ERR_UNSUPPORTED_TYPE = 6, /* tensor or value type we cannot read */
    DOZE_ERR_BAD_SHAPE = 7,        /* dimensions inconsistent with the config */
    DOZE_ERR_MISSING = 8,          /* a required tensor or key is absent */
    DOZE_ERR_OUT_OF_MEMORY = 9,
    DOZE_ERR_IO = 10,
    DOZE_ERR_TOKEN_RANGE = 11,     /* token id out of the vocabulary */
    DOZE_ERR_BAD_UTF8 = 12,
    DOZE_ERR_CONTEXT_FULL = 13,    /* the session has no position left */
    DOZE_ERR_ABORTED = 14,
    DOZE_ERR_STATE = 15,           /* call not valid in the object's current state */
    DOZE_STATUS_COUNT_ = 16
} doze_status;

#define DOZE_ERROR_MESSAGE_MAX 256

typedef struct {
    int code;                              /* a doze_status */
    char message[DOZE_ERROR_MESSAGE_MAX];  /* NUL-terminated, human readable */
} doze_error;

/* Stable upper-case name of a status ("BAD_MAGIC", "TRUNCATED", ...). */
const char *doze_status_name(int code);

/* ---- tensor types (ggml's numbering) --------------------------------------- */

typedef enum {
    DOZE_TYPE_F32 = 0,
    DOZE_TYPE_F16 = 1,
    DOZE_TYPE_Q4_0 = 2,
    DOZE_TYPE_Q4_1 = 3,
    DOZE_TYPE_Q5_0 = 6,
    DOZE_TYPE_Q5_1 = 7,
    DOZE_TYPE_Q8_0 = 8,
    DOZE_TYPE_Q2_K = 10,
    DOZE_TYPE_Q3_K = 11,
    DOZE_TYPE_Q4_K = 12,
    DOZE_TYPE_Q5_K = 13,
    DOZE_TYPE_Q6_K = 14,
    DOZE_TYPE_IQ4_NL = 20,
    DOZE_TYPE_IQ4_XS = 23,
    DOZE_TYPE_BF16 = 30
} doze_type;

/* "f32", "f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl", "q2_k",
 * "q3_k", "q4_k", "q5_k", "q6_k", "iq4_xs", "bf16", or NULL for an
 * unsupported type. */
const char *doze_type_name(int type);
/* Parses a name doze_type_name gives; returns -1 when unknown. */
int doze_type_from_name(const char *name);

/* ---- model ---------------------------------------------------------------- */

typedef struct doze_model doze_model;
typedef struct doze_loader doze_loader;
typedef struct doze_session doze_session;

typedef enum {
    DOZE_KERNELS_SIMD = 0,      /* wasm SIMD128 (natively through SIMDe) */
    DOZE_KERNELS_REFERENCE = 1  /* scalar reference kernels */
} doze_kernel_set;

typedef struct {
    int context_length;   /* 0: the model's own; otherwise min(this, model's) */
    int kernels;          /* a doze_kernel_set */
    uint64_t max_memory;  /* 0: no limit; else fail with OUT_OF_MEMORY above it */
    int threads;          /* forward-pass threads, 1 .. 64 (0 counts as 1); see
                             doze_model_set_threads */
    int experts_used;     /* a mixture of experts: 0 runs the file's top-k
                             (expert_used_count); 1 .. n_experts runs that many
                             per token instead (the model's info reports it) */
    int ffn_block;        /* channels per FFN block: 0 chooses (see
                             doze_model_ffn_block); else 16 .. 256, a multiple of
                             16 and of ffn_down's quant block (32; 256 for the
                             K-quants). Finer blocks give the router more
                             choice, coarser ones read faster between skips;
                             gate files are bound to the size */
} doze_model_params;

doze_model_params doze_model_default_params(void);

typedef struct {
    char architecture[32];
    int dim;            /* embedding length */
    int hidden_dim;     /* feed-forward length (MoE: of each expert) */
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int rope_dim;
    int vocab_size;
    int context_length; /* as used by sessions (after params) */
    float norm_eps;
    float rope_theta;
    int weight_type;    /* type of the attention/FFN matrices (a doze_type) */
    int tied_output;    /* 1: classifier shares token_embd */
    uint64_t n_params;
    uint64_t weight_bytes;       /* bytes of all tensors as stored */
    uint64_t layer_weight_bytes; /* bytes read per token by the layers */
    int bos_id, eos_id, unk_id;  /* -1 where the model has none */
    int ffn_block;               /* channels per FFN block (16, 32, 64, 128 or
                                    256; see doze_model_ffn_block) */
    uint32_t ffn_order;          /* 0, or the doze.ffn_order key of a file whose
                                    FFN channels doze_ffn_order_write reordered (a hash of
                                    the order; gate files are bound to it) */
    /* the architecture's switches (src/runtime/arch.c) */
    int rope_neox;               /* 1: RoPE pairs (i, i + rope_dim/2) (qwen2, qwen3); 0: (2i, 2i+1) */
    int qkv_bias;                /* 1: Q, K and V projections add a bias */
    int qk_norm;                 /* 1: per-head RMSNorm of q and k before RoPE */
    float rope_scale;            /* linear RoPE scaling: positions divided by it (1: none) */
    int rope_freq_factors;       /* 1: rope_freqs.weight divides each pair's frequency (Llama 3.1+) */
    /* mixture of experts (llama with expert_count, qwen3moe): each layer's
     * FFN is n_experts experts of hidden_dim channels, of which a router
     * picks the top n_experts_used per token (softmax, top-k, the k weights
     * renormalized to sum 1); the layer's FFN is then one FFN block
     * (ffn_block = hidden_dim) that runs the experts or dozes */
    int n_experts;               /* 0: a dense FFN */
    int n_experts_used;          /* the k run per token (0 when dense) */
    int n_experts_used_file;     /* the file's own k (expert_used_count); differs from
                                    n_experts_used when doze_model_params.experts_used
                                    chose another */
} doze_model_info;

/* Streaming load: feed the GGUF file in order, in chunks of any size
 * (1 byte included). Tensor bytes are copied straight into their final place.
 * On any error the loader is left failed; free it. */
doze_loader *doze_loader_new(const doze_model_params *params, doze_error *err);
doze_status doze_loader_feed(doze_loader *ld, const void *bytes, size_t n, doze_error *err);
/* Bytes the loader expects in total (0 until the header has been parsed). */
uint64_t doze_loader_total_bytes(const doze_loader *ld);
uint64_t doze_loader_loaded_bytes(const doze_loader *ld);
/* Ends the stream: on success *out owns the model and the loader is spent. */
doze_status doze_loader_finish(doze_loader *ld, doze_model **out, doze_error *err);
void doze_loader_free(doze_loader *ld);

/* Whole-buffer convenience over the loader. */
doze_status doze_model_load_memory(const void *bytes, size_t n, const doze_model_params *params,
                                   doze_model **out, doze_error *err);
void doze_model_free(doze_model *m);
const doze_model_info *doze_model_get_info(const doze_model *m);
/* Threads for the model's forward pass (1 .. 64; the calling thread counts
 * as one; 1: no pool). Results are bit-identical for any count. Natively the
 * threads start here; in wasm (the threaded build) the host starts a worker
 * per extra thread (js/src/pool.js) and until they all run, work stays on
 * the caller. A build without threads fails INVALID_ARGUMENT for n > 1. Sessions
 * made before a change keep working (their attention uses at most the
 * threads they were made with). One caller at a time uses the threads; a
 * concurrent caller runs alone. */
doze_status doze_model_set_threads(doze_model *m, int n_threads, doze_error *err);
int doze_model_threads(const doze_model *m);
/* A string-valued metadata key of the model's GGUF file ("general.name",
 * "tokenizer.chat_template", ...): NUL-terminated, owned by the model;
 * NULL when the key is absent or not a string. */
const char *doze_model_meta_string(const doze_model *m, const char *key);

/* ---- tokenizer (lives in the model) ------------------------------------------ */

/* doze_tokenize flags */
enum {
    /* add BOS / EOS where the vocabulary says (tokenizer.ggml.add_bos_token,
     * add_eos_token; SentencePiece vocabularies add BOS by default) */
    DOZE_TOKENIZE_ADD_SPECIAL = 1,
    /* match control tokens written in the text (<|im_start|>, <|eot_id|>,
     * ...) as single tokens; without it they are ordinary text */
    DOZE_TOKENIZE_PARSE_SPECIAL = 2
};

/* Encodes UTF-8 text as llama.cpp does: SentencePiece (dummy leading space,
 * merges by score, byte fallback) or byte-level BPE (the pre-tokenizer named
 * by tokenizer.ggml.pre, merges by rank); special tokens as flags say (user-
 * defined tokens always match, as in llama.cpp). Writes up to cap ids;
 * *n_out gets the count needed (call again with a larger buffer if
 * *n_out > cap). Text that is not valid UTF-8 is refused with
 * DOZE_ERR_BAD_UTF8 naming the first bad byte's offset (llama.cpp would
 * read it as U+FFFD or bytes; repair it first where that is wanted). NUL
 * bytes inside len are text. */
doze_status doze_tokenize(const doze_model *m, const char *text, size_t len, int flags,
                          int32_t *out, int cap, int *n_out, doze_error *err);
/* doze_tokenize where, with DOZE_TOKENIZE_PARSE_SPECIAL, control tokens are
 * matched only outside n_literal byte ranges of the text: literal holds
 * (n_literal, 2) [start, end) offsets. For a rendered chat whose messages'
 * contents are the ranges: the template's own <|im_start|> ... are tokens,
 * while a user who types <|im_start|> gets text, not a new turn. Elsewhere
 * the ids are doze_tokenize's. */
doze_status doze_tokenize_literal(const doze_model *m, const char *text, size_t len, int flags, const size_t *literal,
                                  int n_literal, int32_t *out, int cap, int *n_out, doze_error *err);
/* 1 if generation should stop at this token: EOS, EOT, EOM and the other
 * end-of-turn tokens llama.cpp recognizes (<|im_end|>, <|eot_id|>,
 * <|endoftext|>, <end_of_turn>, ...); 0 otherwise (or out of range). */
int doze_token_is_eog(const doze_model *m, int token);
/* The bytes token `token` decodes to after `prev` (-1: the start of the
 * text): where a SentencePiece vocabulary adds a dummy leading space
 * (tokenizer.ggml.add_space_prefix), the leading space of a piece at the start
 * or following BOS is dropped (so tokenized text decodes back, with or
 * without BOS); <0xNN> tokens give their byte; control and unknown tokens give
 * nothing; user-defined tokens give their text. Writes up to cap bytes into
 * buf and the piece's length into *len (a piece is at most DOZE_MAX_PIECE
 * bytes). */
#define DOZE_MAX_PIECE 1024
doze_status doze_token_to_piece(const doze_model *m, int prev, int token, char *buf, size_t cap,
                                size_t *len, doze_error *err);

/* A tokenizer without a model: read from a GGUF file's metadata alone (the
 * tensors are not needed, so vocabulary-only GGUFs work, and so does the
 * start of any model file). bytes must hold the whole header (TRUNCATED
 * otherwise: read more of the file and call again). The functions behave as
 * doze_tokenize, doze_token_to_piece and doze_token_is_eog. */
typedef struct doze_vocab doze_vocab;
doze_status doze_vocab_load(const void *bytes, size_t n, doze_vocab **out, doze_error *err);
void doze_vocab_free(doze_vocab *v);
int doze_vocab_size(const doze_vocab *v);
doze_status doze_vocab_tokenize(const doze_vocab *v, const char *text, size_t len, int flags,
                                int32_t *out, int cap, int *n_out, doze_error *err);
doze_status doze_vocab_token_to_piece(const doze_vocab *v, int prev, int token, char *buf,
                                      size_t cap, size_t *len, doze_error *err);
int doze_vocab_is_eog(const doze_vocab *v, int token);

/* ---- session: KV cache + scratch ------------------------------------------------
 * Lifetimes: a model must outlive every handle made on it (sessions,
 * gates in use, speculators, trainers, fine-tuning runs); free those first,
 * in any order, then the model. A session must outlive its speculator. */

doze_session *doze_session_new(doze_model *m, doze_error *err);
void doze_session_free(doze_session *s);
void doze_session_reset(doze_session *s);
int doze_session_pos(const doze_session *s);
/* Runs one token at the next position; its logits become available. */
doze_status doze_session_step(doze_session *s, int token, doze_error *err);
/* (vocab_size) logits of the last step. */
const float *doze_session_logits(const doze_session *s);

/* Runs n tokens at the next n positions together (matrix-matrix products:
 * each tile of weights is read once for all of them), exactly as n
 * doze_session_step calls would with every gate on; the last token's
 * logits, mask and compute become available. Under a budget with gates, the
 * gates decide per token as a step would, at the price of compute the batch
 * starts with (the budget's feedback then follows token by token). */
doze_status doze_session_prefill(doze_session *s, const int32_t *tokens, int n, doze_error *err);

/* ---- skipping: masks, budget, gates ------------------------------------------------ */

/* A step's mask: which layers ran (n_layers bytes, 1 = ran) and, per layer,
 * which query heads ran ((n_layers, n_heads) bytes). A skipped layer adds
 * nothing to the token's residual stream and writes no key/value (later
 * tokens do not attend to this position at that layer). A skipped head
 * computes no Q slice, no attention and no slice of the output projection. */

/* FFN blocks. The FFN intermediate dimension of every layer is cut
 * into blocks of doze_model_ffn_block(m) channels (the last one shorter when
 * hidden_dim is not a multiple): n_blocks = ceil(hidden_dim / block). The
 * block size is a property of the model: 16 when ffn_gate, ffn_up and
 * ffn_down are all f32 or f16 and hidden_dim < 8 * 32 (small FFNs get finer
 * blocks), 256 when an ffn_down is a K-quant (q2_k ... q6_k, iq4_xs: it splits
 * only at whole 256-value super-blocks), else 32 (a q8_0/q4_0 ffn_down
 * splits only at whole 32-element blocks), doubled up to 256 while one
 * block's ffn_gate rows are under 64 KB and 12 blocks remain (a running
 * block between skipped ones is one short read, which memory serves
 * slowly: docs/skipping.md). A skipped block computes none of its ffn_gate/ffn_up rows and none
 * of its ffn_down columns (ffn_down is stored per block at load, so its
 * weights are not read). */
#define DOZE_FFN_BLOCK_SIZE 256 /* the largest block size */
int doze_model_ffn_block(const doze_model *m);
int doze_model_ffn_blocks(const doze_model *m);

/* A mask: which units run for a token, or for each of T tokens (the arrays
 * then hold T of these rows one after the other). A nonzero byte runs. */
typedef struct {
    const uint8_t *layers; /* (n_layers); required */
    const uint8_t *heads;  /* (n_layers, n_heads); NULL: every head of a running layer */
    const uint8_t *ffn;    /* (n_layers, n_blocks); NULL: every FFN block of a running layer */
    const uint8_t *experts; /* MoE: (n_layers, n_experts), the experts that run where the
                               layer's FFN runs (their router probabilities renormalized
                               over them); NULL: the model's own top-k */
} doze_mask;

/* Runs one token with exactly this mask (the forced-mask API, for analysis
 * and tests). */
doze_status doze_session_step_masked(doze_session *s, int token, const doze_mask *mask, doze_error *err);
/* A batched prefill of n tokens under their masks (rows of n tokens). */
doze_status doze_session_prefill_masked(doze_session *s, const int32_t *tokens, int n, const doze_mask *mask,
                                        doze_error *err);
/* The mask the last step used: (n_layers), (n_layers, n_heads) and
 * (n_layers, n_blocks) (all 0 for a skipped layer). */
const uint8_t *doze_session_layer_mask(const doze_session *s);
const uint8_t *doze_session_head_mask(const doze_session *s);
const uint8_t *doze_session_ffn_mask(const doze_session *s);
/* MoE: the experts the last step ran, (n_layers, n_experts) (all 0 where
 * the layer or its FFN dozed); NULL for a dense model. */
const uint8_t *doze_session_expert_mask(const doze_session *s);
/* Fraction of the dense per-token layer compute (attention + FFN, by their
 * multiply-accumulate counts at this position, the router's own included)
 * the last step spent. 1 for a dense step. */
float doze_session_compute(const doze_session *s);

/* Scores a text: runs tokens[0..n) at the next n positions and writes, for
 * each t, nll[t] = -log p(next[t] | the context through tokens[t]) (natural
 * log, in double from the float logits) and, when compute is not NULL,
 * compute[t], token t's achieved compute ratio. For a text's own
 * likelihood pass next = tokens + 1 and one token fewer. A session whose
 * gates decide (a budget below 1) runs the tokens one step at a time, so the
 * budget's feedback follows every token as in generation; a dense session
 * runs them in batches as doze_session_prefill does, with the logits of
 * single steps bit for bit, several times faster. Afterwards the last
 * token's logits, mask and compute are available, as after a step. */
doze_status doze_session_score(doze_session *s, const int32_t *tokens, const int32_t *next, int n, double *nll,
                               float *compute, doze_error *err);

/* Budget b in (0, 1]: the fraction of the dense per-token layer compute the
 * gates may spend; 1 is dense. May change between steps. */
doze_status doze_session_set_budget(doze_session *s, float budget, doze_error *err);
float doze_session_get_budget(const doze_session *s);

typedef struct doze_gates doze_gates;

typedef struct {
    int protect_layers; /* the first N layers are never skipped whole (default 1) */
    int protect_tokens; /* the first N positions run dense (default 1: BOS) */
    float ridge;        /* regularization of the training-free fit (default 1e-2) */
    uint64_t random_seed; /* nonzero: random routers instead of the fit (the floor that
                             real gates must beat), still calibrated to the budget */
    int ffn_gates;      /* 1 (default): gate the FFN blocks too; 0: heads and layers only
                           (every FFN block of a running layer runs) */
} doze_gates_params;

doze_gates_params doze_gates_default_params(void);

/* The training-free router: runs the dense model over `tokens` (one
 * sequence; BOS first) and fits, per layer, a linear map from the normed
 * residual entering the layer to the log of the damage of skipping the
 * layer, each head and each FFN block, then calibrates the budget ->
 * threshold table on the same tokens. */
doze_status doze_gates_calibrate(doze_model *m, const int32_t *tokens, int n,
                                 const doze_gates_params *p, doze_gates **out, doze_error *err);
/* Gate files: a small GGUF (see README) that names the model it belongs to. */
doze_status doze_gates_load(const doze_model *m, const void *bytes, size_t n, doze_gates **out,
                            doze_error *err);
/* Writes the gate file through fn (returns 0 on success). */
doze_status doze_gates_save(const doze_gates *g, int (*fn)(void *ctx, const void *bytes, size_t n),
                            void *ctx, doze_error *err);
void doze_gates_free(doze_gates *g);

/* FFN channel order (see src/tools/ffn_order.c). The FFN's intermediate
 * channels can be permuted without changing the model's function; grouping
 * the channels that matter on the same tokens into the same blocks makes FFN
 * blocks cheaper to skip. */
typedef struct {
    int max_tokens;        /* calibration tokens used (default 4096; fewer when their
                              contributions, n_layers * tokens * hidden_dim floats, would
                              pass 256 MiB) */
    float keep;            /* the share of a layer's blocks a token keeps that the order is
                              made for, in (0, 1) (default 0.6) */
    int tries_per_channel; /* local-search swaps tried per channel and layer (default 40;
                              fewer on large FFNs, to bound the work) */
    uint64_t seed;         /* of the search (default 1) */
} doze_ffn_order_params;

doze_ffn_order_params doze_ffn_order_default_params(void);
/* Runs the dense model over tokens (one sequence, BOS first; the session
 * restarts when its context is full) and finds each layer's channel order:
 * perm (n_layers, hidden_dim), new channel c of layer l = old channel
 * perm[l * hidden_dim + c]. kept (n_layers, 2; may be NULL): the share of the
 * FFN contribution the tokens keep in their top blocks, before and after.
 * Needs 2 to 64 FFN blocks per layer. Deterministic for a given seed. */
doze_status doze_ffn_order(doze_model *m, const int32_t *tokens, int n_tokens, const doze_ffn_order_params *p,
                           int32_t *perm, float *kept, doze_error *err);
/* Writes the GGUF model `file` with each layer's FFN channels in the order
 * perm (ffn_gate and ffn_up rows, ffn_down columns; ffn_down must be f32 or
 * f16) and the key doze.ffn_order, through fn (returns 0 on success). The
 * written model computes what the original does (up to the order of the
 * FFN's float sums). */
doze_status doze_ffn_order_write(const void *file, size_t n, const int32_t *perm, int n_layers, int hidden_dim,
                                 int (*fn)(void *ctx, const void *bytes, size_t len), void *ctx, doze_error *err);
/* What doze_ffn_order_write would refuse about the file itself (truncated,
 * another shape, a quantized ffn_down), found before any search. */
doze_status doze_ffn_order_check(const void *file, size_t n, int n_layers, int hidden_dim, doze_error *err);
/* Uses g for this session's decisions (NULL: none, every step is dense).
 * g must outlive the session's use of it. */
doze_status doze_session_set_gates(doze_session *s, const doze_gates *g, doze_error *err);

/* The whole-sequence forward (layer by layer over the T tokens, the order
 * training runs) under per-token masks (rows of T tokens; NULL: dense).
 * Writes logits (T, vocab_size): the bits of the token-by-token forward with
 * a KV cache under the same masks. */
doze_status doze_sequence_forward(doze_model *m, const int32_t *tokens, int T, const doze_mask *mask,
                                  float *logits, doze_error *err);

/* ---- gate fine-tuning by backprop ----------------------------------------------------
 * The base weights stay frozen; only the routers learn. Hard decisions in the
 * forward pass, gradients through a straight-through Gumbel-sigmoid with an
 * annealed temperature; the loss is the KL divergence from the dense model's
 * own next-token distribution plus a compute term pulling the expected
 * compute to the budget; AdamW; seeded and deterministic. The trainer runs on
 * the model's threads (doze_model_set_threads), with the same bits at any
 * count. */

typedef struct doze_trainer doze_trainer;

typedef struct {
    float budget;         /* target compute b (default 0.7) */
    int context;          /* tokens per window T (default 128) */
    int batch;            /* windows per step B (default 8) */
    float lr;             /* Adam learning rate (default 2e-2) */
    float weight_decay;   /* AdamW decay (default 1e-4) */
    float compute_weight; /* weight of (E[compute] - b)^2 (default 20) */
    float dual_rate;      /* step of a Lagrange multiplier on E[compute] - b, so that the
                             run itself ends at the budget (default 0: off) */
    float tau_start;      /* Gumbel-sigmoid temperature at step 0 (default 1) */
    float tau_end;        /* ... at the last step (default 0.2) */
    int total_steps;      /* for the annealing schedule (default 400) */
    uint64_t seed;        /* noise (default 1) */
    int ffn_gates;        /* doze_finetune_new without init gates: whether the training-free
                             gates it starts from gate FFN blocks (default 1) */
    /* joint training: the model's weights learn together with its routers */
    int joint;            /* 1: every weight learns too (default 0: gates only) */
    int task_loss;        /* DOZE_LOSS_KL (default): distillation towards the dense model's
                             next-token distribution; DOZE_LOSS_CE: the text's next tokens */
    float weight_lr;      /* joint: Adam learning rate of the weights (default 5e-4) */
    float weight_clip;    /* joint: the weights' gradient norm is clipped to this (default 1;
                             0: no clipping) */
    float weight_lr_min;  /* joint: the weights' learning rate decays to this along a cosine
                             over total_steps (default 0: constant weight_lr) */
    int weight_warmup;    /* joint: steps of linear warm-up of the weights' rate (default 0) */
    float weight_anchor;  /* joint, every weight learning: decoupled decay towards the weights
                             the run started from, at this rate (default 0: none); keeps a
                             fine-tune from drifting from the model's dense quality */
    float weight_ema;     /* joint, every weight learning: the model written is the
                             exponential moving average of the weights over the steps, with
                             this decay in (0, 1) (default 0: the last step's weights) */
    float budget_lo, budget_hi; /* a budget range instead of one budget: each window draws
                             its budget uniformly from [lo, hi] (default 0: off), so that one
                             set of gates (and, joint, one model) serves every budget */
    float dense_fraction; /* with a range: the share of windows that run dense (default 0.2) */
    int lora_rank;        /* joint: 0 (default) fine-tunes every weight; R > 0 trains rank-R
                             adapters W = W0 + B A on the projections instead (embedding,
                             classifier and norms frozen), merged into the weights written */
    float noise_end;      /* scale of the decisions' logistic noise at the last step, in [0, 1];
                             it falls linearly from 1 (default 1: constant) */
    /* joint on a mixture of experts (the router and the expert stacks learn too) */
    float balance_loss;   /* C of the load-balancing term C E sum_e f_e P_e per layer, f_e
                             over the experts that ran (default 0.01, the full trainer's) */
    int moe_top_k;        /* 1: the training forward runs each token's top k experts (the
                             model's own rule) instead of choosing them under the budget by the
                             gates' expert constants, which a model trained from scratch lacks
                             until the finish calibrates them (default 0) */
} doze_train_params;

enum { DOZE_LOSS_KL = 0, DOZE_LOSS_CE = 1 };

typedef struct {
    int step;
    float loss;              /* kl + compute term */
    float kl;                /* the task loss: mean KL(dense || gated) per token, nats (or the
                                cross-entropy with DOZE_LOSS_CE) */
    float expected_compute;  /* under the relaxed gates */
    float achieved_compute;  /* under the hard decisions of this step */
    float tau;
} doze_train_stats;

doze_train_params doze_train_default_params(void);
/* A trainer for g (trained in place) on model m. */
doze_status doze_trainer_new(doze_model *m, doze_gates *g, const doze_train_params *p,
                             doze_trainer **out, doze_error *err);
/* One step on tokens (batch, context): each window is one sequence from
 * position 0 (start windows with BOS). */
doze_status doze_trainer_step(doze_trainer *t, const int32_t *tokens, doze_train_stats *stats,
                              doze_error *err);
void doze_trainer_free(doze_trainer *t);
/* Re-tabulates the budget -> threshold table of g on text (after training,
 * so that every b keeps its meaning). */
doze_status doze_gates_retune(doze_model *m, doze_gates *g, const int32_t *tokens, int n,
                              doze_error *err);

/* A whole fine-tuning run over a text, as `doze finetune` and the JS
 * finetuneGates run it: the text is split into stories at lines
 * "<|endoftext|>", each encoded as the vocabulary says (from BOS where it adds
 * one; byte-level BPE files such as Qwen2.5's usually add none); every step
 * draws `batch` stories (seeded) and trains on the first `context` tokens from each story's start.
 * With init NULL the run starts from training-free gates calibrated on the
 * text's first 512 tokens; otherwise from a copy of init. */
typedef struct doze_finetune doze_finetune;
doze_status doze_finetune_new(doze_model *m, const doze_gates *init, const doze_train_params *p,
                              const char *text, size_t len, doze_finetune **out, doze_error *err);
doze_status doze_finetune_step(doze_finetune *f, doze_train_stats *stats, doze_error *err);
/* Retunes the budget table on the text; the gates are then ready to use. */
doze_status doze_finetune_finish(doze_finetune *f, doze_error *err);
/* Joint fine-tuning (params.joint): writes the fine-tuned model through fn:
 * the GGUF file the model was loaded from (file, n), with the trained
 * weights (f32) in place of its own and every other key and tensor kept. */
doze_status doze_finetune_write_model(doze_finetune *f, const void *file, size_t n,
                                      int (*fn)(void *ctx, const void *bytes, size_t len), void *ctx,
                                      doze_error *err);
/* Joint: what doze_finetune_write_model would refuse about `file` itself
 * (not a GGUF, truncated, not the model being trained), from its header:
 * call it before the steps, so that a wrong file fails before the run. */
doze_status doze_finetune_check_model(doze_finetune *f, const void *file, size_t n, doze_error *err);
/* Joint: instead of doze_finetune_finish, retunes the gates' budget table on
 * the text with the fine-tuned model (loaded from what
 * doze_finetune_write_model wrote) and makes them that model's gates. */
doze_status doze_finetune_finish_joint(doze_finetune *f, doze_model *trained, doze_error *err);
/* The gates being trained (owned by f until taken). */
doze_gates *doze_finetune_gates(doze_finetune *f);
/* Hands the gates over to the caller (who frees them); f keeps none. */
doze_gates *doze_finetune_take_gates(doze_finetune *f);
int doze_finetune_tokens(const doze_finetune *f); /* tokens of text encoded */
void doze_finetune_free(doze_finetune *f);

/* ---- speculation: the dozing model drafts, the whole model verifies -----------------
 * Lossless speed from the gates: draft k tokens at a low budget (the
 * session's gates deciding as usual), run the whole model once over them as
 * a batch, keep what it agrees with, roll the cache back past the rest.
 * Greedy output is the dense model's token for token (the same logits, bit
 * for bit: the verify is the batched dense forward, which equals stepping);
 * sampled output follows the dense distribution (speculative sampling's
 * accept/reject rule); the KV cache kept after a step is the dense one. */

/* Forgets positions >= pos (0 <= pos <= doze_session_pos): at every layer
 * they are no longer valid, and the next step runs at pos. Continuing from
 * there gives exactly (bits of logits and K/V) what a session that never ran
 * the forgotten tokens gives. The last step's outputs belonged to a
 * forgotten position, so when pos < doze_session_pos they are cleared:
 * logits all 0, masks all on, compute 1 (step the token at pos to get
 * logits again). The budget's feedback (a running price of compute, not
 * part of the sequence) is kept, except that pos 0 resets it as
 * doze_session_reset does. */
doze_status doze_session_truncate(doze_session *s, int pos, doze_error *err);

#define DOZE_SPEC_MAX_K 8

typedef struct {
    int k;              /* tokens drafted per step, 1..DOZE_SPEC_MAX_K; 0: adaptive (default):
                           1..DOZE_SPEC_MAX_K, or 0 drafts (a plain dense step) while the
                           measured costs say no draft pays */
    float draft_budget; /* the draft's budget in (0, 1); 0: adaptive (default) */
    int timed;          /* adaptive choices from 1 (default): measured wall-clock costs of
                           the draft steps and the verify passes; 0: a fixed cost model
                           (multiply-accumulates; deterministic, so a seeded sampled run
                           is reproducible) */
} doze_spec_params;

doze_spec_params doze_spec_default_params(void);

/* Flags of an emitted token. */
enum {
    DOZE_SPEC_DRAFTED = 1, /* the draft proposed it */
    DOZE_SPEC_ACCEPTED = 2 /* ... and the whole model accepted it */
};

typedef struct {
    int n;                                /* tokens emitted, 1..k + 1 */
    int32_t tokens[DOZE_SPEC_MAX_K + 1];  /* in order; the last one is not yet in the session */
    uint8_t flags[DOZE_SPEC_MAX_K + 1];   /* DOZE_SPEC_* per token (the last: 0, the whole
                                             model's own choice) */
    int k;                                /* tokens drafted this step */
    int accepted;                         /* of them kept (n - 1) */
    float draft_budget;                   /* the draft's budget this step */
    float draft_compute;                  /* mean achieved compute of the draft steps */
    float acceptance;                     /* running rate of drafted tokens accepted */
    double draft_ms, verify_ms;           /* time spent (timed only; else 0) */
} doze_spec_result;

typedef struct doze_speculator doze_speculator;
typedef struct doze_sampler doze_sampler; /* (the sampler section below) */

/* A speculator drafting with s's gates (doze_session_set_gates; required).
 * s must outlive it. The session's own budget is left as it is between
 * steps (the draft sets its own during a step). */
doze_speculator *doze_speculator_new(doze_session *s, const doze_spec_params *p, doze_error *err);
void doze_speculator_free(doze_speculator *sp);

/* One speculative step. The session holds the sequence but its last token,
 * `token` (e.g. the prompt's last token after a prefill of the others, or
 * the last token the previous step emitted). Runs token and k drafts, emits
 * 1..k+1 tokens drawn by smp (greedy or sampling, as its params say) into
 * r, and leaves the session holding token and the accepted drafts, its
 * logits the dense ones the last emitted token was drawn from. Near the
 * end of the context k shrinks (to 0: one dense step). smp's penalties
 * (doze_sampler_params) apply as in a dense run: each drafted or emitted
 * token's distribution sees the tokens before it; the step leaves smp's
 * history as it found it, and the caller hands it the emitted tokens
 * (doze_sampler_accept), as after doze_sampler_sample. */
doze_status doze_speculative_step(doze_speculator *sp, doze_sampler *smp, int token, doze_spec_result *r,
                                  doze_error *err);
/* (vocab_size) dense logits emitted token i (0 <= i < r->n) of the last
 * step was drawn from (for sampling: before the accept/reject rule). */
const float *doze_speculator_logits(const doze_speculator *sp, int i);

/* ---- sampler -------------------------------------------------------------------- */

/* Picks the next token from a step's logits. The stages run in llama.cpp's
 * default order (common/sampling: penalties, top-k, top-p, min-p,
 * temperature, then the draw):
 *   1. penalties, over the last repeat_last_n tokens given to
 *      doze_sampler_accept: a token seen c > 0 times there has its logit
 *      divided by repeat_penalty when positive (multiplied when <= 0), then
 *      lowered by c * frequency_penalty + presence_penalty;
 *   2. top-k: the k largest logits (ties: lower id first);
 *   3. top-p: of those, by falling probability (softmax of the logits so
 *      far, temperature not yet applied), the smallest prefix whose mass
 *      reaches top_p;
 *   4. min-p: of those, the tokens whose probability is at least min_p times
 *      the largest one's (logit >= max + log(min_p));
 *   5. temperature: softmax(logit / T) over what is left, and one seeded
 *      draw. T = 0 (or top_k = 1) is greedy: the largest penalized logit;
 *      so is a T > 0 so small that logit / T overflows a float (its limit).
 * Only temperature and the draw run when nothing else is on, in vocabulary
 * order, as they always have (same seed, same tokens as before).
 *
 * History: the penalties see only what the caller hands to
 * doze_sampler_accept — every token of the context in order, the prompt's
 * included (as llama.cpp does), and each sampled token once it is kept.
 * doze_sampler_sample never records its own pick. doze_sampler_reset
 * forgets the history (for a new conversation); the RNG runs on.
 *
 * RNG: xorshift64* (see sampler.c), so a seed gives the same tokens on
 * every platform, natively and in wasm. */
typedef struct doze_sampler doze_sampler;

typedef struct {
    float temperature;       /* 0: greedy (argmax); >= 0 */
    int top_k;               /* 0: off; >= 0 */
    float top_p;             /* 1: off; in [0, 1] (0: the most likely token alone) */
    uint64_t seed;
    float min_p;             /* 0: off; in [0, 1] */
    float repeat_penalty;    /* 1: off; > 0 */
    int repeat_last_n;       /* tokens of history the penalties look at: 64; 0: off; >= 0 */
    float frequency_penalty; /* 0: off; per occurrence */
    float presence_penalty;  /* 0: off; once per token present */
} doze_sampler_params;

doze_sampler_params doze_sampler_default_params(void);
/* DOZE_OK when every field is in range; otherwise INVALID_ARGUMENT naming
 * the first field that is not (and the rule it breaks). */
doze_status doze_sampler_params_check(const doze_sampler_params *p, doze_error *err);
doze_sampler *doze_sampler_new(const doze_sampler_params *p, int vocab_size, doze_error *err);
void doze_sampler_free(doze_sampler *s);
/* The sampled token id, or -1 without a sampler or logits. logits: the
 * sampler's vocab_size values. */
int doze_sampler_sample(doze_sampler *s, const float *logits);
/* Adds a token of the context to the history the penalties look at;
 * TOKEN_RANGE when it is not in the vocabulary. */
doze_status doze_sampler_accept(doze_sampler *s, int token, doze_error *err);
/* Forgets the history. */
void doze_sampler_reset(doze_sampler *s);

/* ---- full-model training and tokenizer training ------------------------------
 * Every weight learns: embedding, norms, Q/K/V/O, FFN, classifier (tied to
 * the embedding or not). Next-token cross-entropy over batches of windows,
 * AdamW, global-norm gradient clipping, warm-up then cosine or linear decay
 * of the learning rate. Seeded and deterministic: the same seed gives the
 * same bits at any thread count, natively and in wasm (the threads split
 * independent rows and windows, never a reduction). Checkpoints are GGUF
 * model files that also carry the optimizer state and the data RNG, so a
 * run resumed from one continues exactly as it would have without the stop. */

typedef struct doze_full_trainer doze_full_trainer;

enum { DOZE_LR_COSINE = 0, DOZE_LR_LINEAR = 1 };

typedef struct {
    /* shape (the vocabulary size comes from the vocabulary) */
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads;
    int context;        /* T: tokens per window, and the model's context length (default 256) */
    int tied;           /* 1: the classifier is the embedding (default 1) */
    /* optimization */
    int batch;          /* windows per step (default 8) */
    int total_steps;    /* for the schedule (default 1000) */
    int warmup_steps;   /* linear warm-up from 0 (default 100) */
    int schedule;       /* DOZE_LR_COSINE (default) or DOZE_LR_LINEAR, down to min_lr */
    float lr;           /* peak learning rate (default 1e-3) */
    float min_lr;       /* at the last step (default lr / 10) */
    float weight_decay; /* AdamW, on matrices and the embedding (default 0.1) */
    float beta1, beta2, eps; /* Adam (0.9, 0.95, 1e-8) */
    float grad_clip;    /* global L2 norm; 0: off (default 1) */
    float init_std;     /* weights ~ N(0, init_std), output projections / sqrt(2 L) (0.02) */
    uint64_t seed;      /* initialization and data order (default 1) */
    int threads;        /* 0: every core natively, 1 in wasm; > 1 needs a build with threads */
    /* a mixture of experts (0: the dense SwiGLU FFN): each layer's FFN is
     * n_experts experts of hidden_dim channels and a router (ffn_gate_inp);
     * each token runs the n_experts_used of highest router probability,
     * weighted by those probabilities renormalized to sum 1 (the runtime's
     * rule); the selection itself gets no gradient */
    int n_experts;      /* E: 0, or 2 .. 256 */
    int n_experts_used; /* k in [1, E] */
    float balance_loss; /* C of the load-balancing term C E sum_e f_e P_e per
                           layer (Switch Transformer; f_e the share of tokens
                           with e among their top k, P_e the mean router
                           probability of e); default 0.01 */
} doze_full_params;

typedef struct {
    int step;        /* steps done, this one included */
    float loss;      /* mean next-token cross-entropy of the batch, nats */
    float grad_norm; /* global L2 norm before clipping */
    float lr;        /* learning rate used */
    float balance;   /* the load-balancing terms of the MoE layers, summed
                        (added to the loss the gradient is of; 0 when dense) */
} doze_full_stats;

doze_full_params doze_full_default_params(void);
/* A new seeded model of the given shape with the vocabulary of a GGUF file
 * (its tokenizer.ggml.* keys, e.g. one written by doze_vocab_train). */
doze_status doze_full_trainer_new(const doze_full_params *p, const void *vocab, size_t vocab_n,
                                  doze_full_trainer **out, doze_error *err);
/* Resumes from a checkpoint (doze_full_trainer_save with the state). */
doze_status doze_full_trainer_resume(const void *ckpt, size_t n, doze_full_trainer **out,
                                     doze_error *err);
void doze_full_trainer_free(doze_full_trainer *t);
const doze_full_params *doze_full_trainer_params(const doze_full_trainer *t);
int doze_full_trainer_vocab_size(const doze_full_trainer *t);
int doze_full_trainer_steps_done(const doze_full_trainer *t);
/* Changes total_steps (e.g. to extend a resumed run; changes the schedule). */
doze_status doze_full_trainer_set_total_steps(doze_full_trainer *t, int total_steps, doze_error *err);
/* Draws a batch (batch, context + 1) of windows at seeded random offsets of
 * a token stream (n >= context + 1) with the trainer's RNG (checkpointed). */
doze_status doze_full_trainer_sample(doze_full_trainer *t, const int32_t *stream, size_t n,
                                     int32_t *windows, doze_error *err);
/* One step on windows (batch, context + 1): tokens 0..T-1 of each window
 * are the input, 1..T the targets. */
doze_status doze_full_trainer_step(doze_full_trainer *t, const int32_t *windows,
                                   doze_full_stats *stats, doze_error *err);
/* Mean next-token cross-entropy (nats) over n_windows windows (context + 1
 * tokens each), forward only. */
doze_status doze_full_trainer_eval(doze_full_trainer *t, const int32_t *windows, int n_windows,
                                   double *loss, doze_error *err);
/* Writes the model as GGUF (llama, with the vocabulary), matrices in `type`
 * (a doze_type); with_state: f32 only, plus the Adam moments and the run's
 * state, which doze_full_trainer_resume reads (the file still loads as a
 * model). */
doze_status doze_full_trainer_save(const doze_full_trainer *t, const char *name, int type,
                                   int with_state,
                                   int (*fn)(void *ctx, const void *bytes, size_t n), void *ctx,
                                   doze_error *err);

/* Trains a SentencePiece-style BPE vocabulary of `size` pieces on the
 * stories of text (split at "<|endoftext|>" lines): <unk>, <s>, </s>, the
 * 256 <0xNN> byte tokens, U+2581 and frequent multi-byte characters, then
 * merges (score -k for the k-th); writes it as a vocab-only GGUF. */
doze_status doze_vocab_train(const char *text, size_t len, int size,
                             int (*fn)(void *ctx, const void *bytes, size_t n), void *ctx,
                             doze_error *err);

#ifdef __cplusplus
}
#endif
#endif /* DOZE_H */
