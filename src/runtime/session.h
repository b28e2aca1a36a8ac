/* Internal view of a session: the forward pass drivers (session.c for one
 * token, forward.c for batches) and what gate calibration reads. */
#ifndef DOZE_SESSION_H
#define DOZE_SESSION_H

#include "carve.h"
#include "layer.h"
#include "model.h"

/* What a dense step can record for calibrating the training-free router. */
typedef struct doze_step_trace {
    float *x_in;        /* (n_layers, dim) residual entering each layer */
    float *xn;          /* (n_layers, dim) normed residual entering each layer */
    float *in_norm;     /* (n_layers) ||x|| entering each layer */
    float *update_norm; /* (n_layers) ||x_out - x_in|| of each layer */
    float *head_norm;   /* (n_layers, n_heads) ||Wo_h att_h|| */
    float *block_norm;  /* (n_layers, n_ffn_blocks) ||W_down_j h_j|| (may be NULL) */
    float *ffn_norm;    /* (n_layers) ||sum_j W_down_j h_j||, the FFN's update (may be NULL) */
    float *hn;          /* (n_layers, dim) the FFN's normed input, after attention (may be NULL) */
    float *expert_probs; /* MoE: (n_layers, n_experts) router probabilities (may be NULL) */
    float *expert_drop;  /* MoE: (n_layers, n_experts) how far the FFN's update moves when a
                            running expert alone is dropped, the others renormalized (0 for
                            the others; may be NULL) */
} doze_step_trace;

doze_model *session_model(const doze_session *s);
/* The session's KV cache (ctx = the model's context length). */
const kv_cache *session_kv(const doze_session *s);

/* Runs n tokens at the session's next positions through every layer: x(n,
 * dim) holds their embeddings. forced: mk holds their masks; else the gates
 * decide under the budget (at the price of the batch's start; the feedback
 * on the price follows token by token) or, without gates, every unit runs.
 * Leaves the last token's stream, logits, mask and compute in the session.
 * trace: n = 1 only (may be NULL). */
void session_run(doze_session *s, int n, float *x, batch_masks *mk, int forced, layer_scratch *ls,
                 doze_step_trace *trace);

/* Nonzero when the gates decide the next steps (gates set, budget < 1). */
int session_gated(const doze_session *s);

/* One step with a forced mask (NULL: decided by the session's gates and
 * budget, or dense) that also fills trace when not NULL. */
doze_status session_step(doze_session *s, int token, const doze_mask *mask, doze_step_trace *trace,
                         doze_error *err);

/* A prefill under forced masks (NULL: the gates, or dense). */
doze_status session_prefill(doze_session *s, const int32_t *tokens, int n, const doze_mask *mask,
                            doze_error *err);

/* After a traced dense step: what skipping each layer, or each layer's
 * attention (every head), would have done to that token — the squared
 * distance of the final normed hidden state from the dense one, relative to
 * its squared norm — by re-running the layers above from the traced
 * residual. The session's state (KV cache, stream) is left as the dense step
 * left it. layer_damage(n_layers), attn_damage(n_layers); ffn_damage
 * (n_layers, may be NULL): what skipping the layer's whole FFN (every block,
 * heads all on) would do. */
doze_status session_damage(doze_session *s, const doze_step_trace *trace, float *layer_damage,
                           float *attn_damage, float *ffn_damage, doze_error *err);

/* Shared by the drivers. */
void batch_masks_carve(carver *c, const doze_model *m, int n, batch_masks *mk);
/* Tokens t0 .. t0 + n - 1 of src (rows of tokens; NULL heads or ffn: all
 * on; NULL src: dense) into dst as 0/1 bytes. */
void batch_masks_copy(const doze_model *m, const doze_mask *src, int t0, int n, batch_masks *dst);
doze_status check_tokens(const doze_model *m, const int32_t *tokens, int n, doze_error *err);
doze_status check_mask(const doze_mask *mask, doze_error *err);

/* ---- speculation ---- */

/* Runs n tokens at the session's next positions densely (every unit, whatever
 * the gates and budget), batched as a prefill, and writes every token's
 * logits: logits(n, vocab_size), row t = the logits a dense step of token t
 * would leave (the same bits). The session's logits are the last row's. */
doze_status session_verify(doze_session *s, const int32_t *tokens, int n, float *logits, doze_error *err);

/* Makes logits(vocab_size) the session's last-step logits (after a truncate,
 * the verified logits of the position now last). */
void session_set_logits(doze_session *s, const float *logits);

#endif
