/* Internal view of the sampler for speculative sampling: the distribution a
 * draw would come from, and draws from given weights with the sampler's own
 * seeded RNG (so a speculative run is as reproducible as a plain one). */
#ifndef DOZE_SAMPLER_H
#define DOZE_SAMPLER_H

#include "doze.h"

/* The vocabulary size the sampler was made for. */
int sampler_vocab_size(const doze_sampler *s);
/* 1 when the sampler takes the argmax (temperature 0 or top_k 1). */
int sampler_greedy(const doze_sampler *s);
/* The argmax of logits (vocab_size), ties to the lowest id, as greedy sampling. */
int sampler_argmax(const doze_sampler *s, const float *logits);
/* dist(vocab_size): the probabilities doze_sampler_sample would draw from
 * for these logits (temperature, top-k, top-p; 0 outside what they keep;
 * one-hot when greedy). Draws nothing. */
void sampler_distribution(doze_sampler *s, const float *logits, float *dist);
/* The penalties' history at a point (sampler_mark) and back to it
 * (sampler_rewind): speculation hands the drafted tokens to
 * doze_sampler_accept while it drafts and judges, so that each position's
 * distribution sees the tokens before it, then rewinds; the caller accepts
 * what was emitted, as after doze_sampler_sample. No-ops without penalties. */
void sampler_mark(doze_sampler *s);
void sampler_rewind(doze_sampler *s);
/* A uniform float in [0, 1) from the sampler's RNG. */
float sampler_uniform(doze_sampler *s);
/* One draw from nonnegative weights(vocab_size) summing to total. */
int sampler_draw(doze_sampler *s, const float *weights, float total);

#endif
