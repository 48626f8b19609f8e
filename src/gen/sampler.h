/* sampler.h — turning one row of logits into one token: a chain of samplers, as in llama.cpp.
 *
 * A chain is a table of sampler objects, each `{name, apply, free}`, run in order over a
 * candidate list (token id, logit) that starts as the whole vocabulary. Filters (penalties,
 * temperature, top-k, top-p, min-p) shrink or reshape the list; the last sampler of a chain
 * (greedy or dist) selects one token. The order of the built-in chain follows Hugging Face
 * `generate`: penalties, temperature, top-k, top-p, min-p, then the draw.
 *
 * Semantics (Hugging Face's logits processors and warpers where they overlap):
 *   repetition penalty  r: every token already in the history has its logit divided by r when
 *                       positive and multiplied by r when negative (CTRL / HF);
 *   presence / frequency penalties (OpenAI, llama.cpp): logit -= frequency * count + presence
 *                       for every token that occurs `count` > 0 times in the history;
 *   temperature T:      logits / T; T <= 0 means greedy (argmax, lowest id among ties);
 *   top-k k:            keeps the tokens whose logit is >= the k-th largest (ties at the
 *                       boundary are kept, as HF does); k <= 0 is off;
 *   top-p p:            keeps the smallest set of most probable tokens whose probability sums
 *                       to >= p (the token that crosses p is kept); p >= 1 is off;
 *   min-p q:            keeps the tokens whose probability is >= q times the largest one;
 *                       q <= 0 is off.
 * The draw takes one uniform double from the caller's rng and walks the renormalised
 * probabilities of the remaining candidates in their current order, so a seed fully
 * determines the token.
 *
 * Nothing is allocated while sampling: the candidate buffer and the penalty counts are sized
 * for the vocabulary when the chain is built. A chain holds no per-sequence state: the history
 * (for penalties) and the rng come with each call, so one chain serves N candidates, each with
 * its own rng. */
#ifndef RLHF_SAMPLER_H
#define RLHF_SAMPLER_H

#include <stdint.h>

#include "src/core/error.h"
#include "src/core/rng.h"

/* One entry of the candidate list. */
typedef struct {
    int32_t id;  /* token id */
    float logit; /* current (possibly transformed) logit */
    float p;     /* probability, valid only where a sampler says so (after softmax) */
} sampler_token;

/* The candidate list a chain works on. `data` is owned by the chain (capacity V). */
typedef struct {
    sampler_token *data; /* (n) */
    int n;               /* live candidates; starts at V */
    int identity;        /* 1 while data[i].id == i for every i (nothing filtered or reordered) */
    int sorted;          /* 1 when data is in descending logit order */
    int has_p;           /* 1 when data[].p is proportional to exp(logit) of the live candidates
                            (normalised right after sampler_list_softmax) */
    int32_t selected;    /* set by the final sampler; -1 before */
} sampler_list;

/* What a sampler may read besides the candidates. */
typedef struct {
    const int32_t *history; /* (n_history) tokens so far: prompt then generated (penalties) */
    int n_history;
    rng_t *rng;             /* the sequence's own generator (dist); may be NULL for greedy */
} sampler_context;

typedef struct sampler sampler;

/* The table entry of one kind of sampler. */
typedef struct {
    const char *name;
    void (*apply)(sampler *s, sampler_list *cur, const sampler_context *ctx);
    void (*free)(sampler *s); /* frees s->state; may be NULL */
} sampler_iface;

struct sampler {
    const sampler_iface *iface;
    void *state; /* owned by the sampler, released by iface->free */
};

/* Settings of the built-in chain. sampler_params_defaults gives the "off" values below, with
 * temperature 1 (plain sampling from the model's distribution). */
typedef struct {
    float temperature;       /* <= 0: greedy */
    int top_k;               /* <= 0: off */
    float top_p;             /* >= 1: off */
    float min_p;             /* <= 0: off */
    float repeat_penalty;    /* 1: off; must be > 0 */
    float presence_penalty;  /* 0: off */
    float frequency_penalty; /* 0: off */
    int penalty_last_n;      /* < 0: the whole history (HF); else only its last n tokens */
    int no_repeat_ngram_size;/* 0: off; n: a token that would repeat an n-gram of the history
                                is banned (logit -inf), as HF's NoRepeatNGramLogitsProcessor */
} sampler_params;

void sampler_params_defaults(sampler_params *p);
/* Checks ranges; the message names the offending setting. */
int sampler_params_validate(const sampler_params *p, rlhf_error *err);
/* 1 if the chain for p is greedy (temperature <= 0): it never reads the rng. */
int sampler_params_is_greedy(const sampler_params *p);

#define SAMPLER_CHAIN_MAX 16

typedef struct {
    sampler samplers[SAMPLER_CHAIN_MAX]; /* owned */
    int n_samplers;
    int n_vocab;                         /* V */
    sampler_list list;                   /* working candidates; data (V) owned */
    int32_t *counts;                     /* (V) scratch for penalties, all zero between calls; owned */
} sampler_chain;

/* Builds an empty chain for a vocabulary of V tokens. sampler_chain_free is safe on a zeroed
 * struct and safe twice. */
int sampler_chain_init(sampler_chain *c, int n_vocab, rlhf_error *err);
void sampler_chain_free(sampler_chain *c);
/* Appends a sampler. On success the chain owns `state` (released through iface->free); on
 * error (chain full) it stays the caller's. */
int sampler_chain_add(sampler_chain *c, const sampler_iface *iface, void *state, rlhf_error *err);

/* Built-in samplers (each appends to the chain; the state they allocate is the chain's). */
int sampler_chain_add_penalties(sampler_chain *c, float repeat, float presence, float frequency, int last_n,
                                rlhf_error *err);
int sampler_chain_add_no_repeat_ngram(sampler_chain *c, int n, rlhf_error *err);
int sampler_chain_add_temperature(sampler_chain *c, float t, rlhf_error *err);
int sampler_chain_add_top_k(sampler_chain *c, int k, rlhf_error *err);
int sampler_chain_add_top_p(sampler_chain *c, float p, rlhf_error *err);
int sampler_chain_add_min_p(sampler_chain *c, float p, rlhf_error *err);
int sampler_chain_add_greedy(sampler_chain *c, rlhf_error *err);
int sampler_chain_add_dist(sampler_chain *c, rlhf_error *err);

/* Builds the standard chain for p (penalties, no-repeat-ngram, temperature, top-k, top-p,
 * min-p, dist; or penalties, no-repeat-ngram then greedy when temperature <= 0). */
int sampler_chain_init_params(sampler_chain *c, int n_vocab, const sampler_params *p, rlhf_error *err);

/* Loads `logits` (V) into the candidate list and runs the chain. Returns the selected token.
 * `logits` is not modified. If the chain ends without a selecting sampler, the first live
 * candidate is returned. After the call c->list holds the final candidates (for inspection). */
int32_t sampler_chain_sample(sampler_chain *c, const float *logits, const sampler_context *ctx);

/* The tokens banned after history[0..n) by no_repeat_ngram_size `size`: every token that
 * followed an earlier occurrence of the history's last size-1 tokens. Writes at most
 * `max_banned` ids (duplicates possible) and returns how many; allocation-free. */
int sampler_ngram_banned(const int32_t *history, int n, int size, int32_t *banned, int max_banned);

/* log softmax(logits)[id] of the raw model distribution, computed in double. */
float sampler_logprob(const float *logits, int n_vocab, int32_t id);
/* Index of the largest logit (lowest index among ties). */
int32_t sampler_argmax(const float *logits, int n_vocab);

/* Helpers for samplers written outside this file: softmax of the live logits into .p (sets
 * has_p), and a stable sort by descending logit (sets sorted). */
void sampler_list_softmax(sampler_list *cur);
void sampler_list_sort(sampler_list *cur);

#endif
