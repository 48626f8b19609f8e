/* generate.h — how the model talks: a KV-cache decoder and the decoding strategies on top of it.
 *
 * Two layers:
 *  - gen_decoder: the model's forward pass with a key/value cache for n_seq sequences of up to
 *    max_len positions. A prompt is prefilled in one batched pass (cblas_sgemm over all of its
 *    rows, in chunks of at most `prefill_rows`), then each step appends one token to any subset
 *    of the sequences. The cache, the rotary tables and every scratch buffer are allocated once
 *    by gen_decoder_init; prefill and step allocate nothing.
 *  - gen_run: greedy, sampled and beam-search generation of N candidates from one prompt
 *    (prefilled once; its cache copied to the other sequences), with per-token streaming,
 *    stop strings, EOS and max_tokens, and Ctrl-C; gen_run_batch: the same for several
 *    prompts decoded together (greedy and sampling).
 *
 * Reproducibility. A decoding step computes every matrix product with a row-independent kernel
 * (each output element is one chain of fused multiply-adds in a fixed order, whatever the
 * number of rows or threads: through packed [in,out] copies of the weights (gen_packed) when
 * they fit GEN_PACKED_MAX_BYTES, else gen_matmul_rows on the model's layout) and
 * attention per sequence, so a sequence's logits are bit-for-bit the same whether it is
 * stepped alone or in a batch of N. Candidate k draws from its own rng seeded
 * from (seed, first_index + k), so each candidate of a batch equals the candidate generated
 * alone with the same seed and index. (OpenBLAS does not promise that an sgemm over N rows
 * gives each row the bits of a 1-row sgemm, and is slower than a dot-product kernel for the
 * few rows of a decoding step, so steps do not use it; prefill does, and its results are shared
 * by all candidates.)
 *
 * Letters as in model.h: L layers, C dim, NKV key/value heads, HS head size, V vocabulary;
 * KVD = NKV * HS. */
#ifndef RLHF_GENERATE_H
#define RLHF_GENERATE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"
#include "src/model/model.h"
#include "src/gen/sampler.h"
#include "src/tok/tokenizer.h"

/* ---- the decoder ---- */

/* A model's step matrices (every layer's and the LM head) copied [in,out] in panels of a few
 * dozen output columns stored contiguously: a decoding step then reads each panel once for 4
 * rows, in order, with no horizontal sums. Made from the weights as they are: a gen_packed is
 * only valid while the model's weights do not change (a caller that trains between generations
 * lets each gen_run pack its own; one that generates many times from fixed weights — the REPL,
 * eval, annotate — makes one and passes it in gen_params.packed). */
typedef struct gen_packed gen_packed;
#define GEN_PACKED_MAX_BYTES ((size_t)96 << 20) /* larger models are decoded from their own layout */
/* *out = the packed copy, or NULL (RLHF_OK) when the matrices exceed GEN_PACKED_MAX_BYTES. */
int gen_packed_make(gen_packed **out, const model *m, rlhf_error *err);
void gen_packed_free(gen_packed **p);

typedef struct {
    const model *m;     /* borrowed: must outlive the decoder and not change while it is used */
    int n_seq;          /* sequences the cache holds */
    int max_len;        /* positions per sequence (<= the model's context) */
    int prefill_rows;   /* rows of one prefill chunk (scratch capacity R >= n_seq) */
    int n_valid;        /* 0, or the tokenizer's vocabulary size when the embedding has more rows:
                           logits of ids >= n_valid are set to -inf (gen_run sets it) */
    float *k_cache;     /* (L, n_seq, max_len, KVD) keys after RoPE; owned */
    float *v_cache;     /* (L, n_seq, max_len, KVD); owned */
    float *kt_cache;    /* (L, n_seq, NKV, HS, max_len): the keys again, position fastest, so a
                           step's scores are vectors over positions (no horizontal sums); owned */
    int *len;           /* (n_seq) filled positions of each sequence; owned */
    float *logits;      /* (n_seq, V) logits after each sequence's last prefill/step; owned */
    float *rope_cos, *rope_sin; /* (max_len, HS/2) Llama only; owned */
    float *arena;       /* scratch: x, xb, qkv, att_out, fc, h (R rows each), att, step
                           logits (n_seq, V); owned */
    float *x, *xb, *qkv, *att_out, *fc, *h, *att, *step_logits;
    int32_t *tok, *pos; /* (R) scratch */
    /* The step matrices packed for the step kernel (gen_packed): borrowed from the caller's
     * gen_packed, or made and owned by gen_decoder_init; NULL when the model is too large to
     * copy (steps then use gen_matmul_rows on the model's own layout). */
    const gen_packed *packed;
    int packed_owned;
} gen_decoder;

/* Allocates a cache for n_seq sequences of max_len positions (1 <= max_len <= context) and the
 * scratch for a step over n_seq rows or a prefill chunk. The decoder borrows m. gen_decoder_free
 * is safe on a zeroed struct and safe twice. */
int gen_decoder_init(gen_decoder *d, const model *m, int n_seq, int max_len, rlhf_error *err);
/* The same with the caller's packed weights (made from m; borrowed; NULL: pack them here). */
int gen_decoder_init_packed(gen_decoder *d, const model *m, int n_seq, int max_len, const gen_packed *packed,
                            rlhf_error *err);
void gen_decoder_free(gen_decoder *d);
/* Empties every sequence (no memory is touched but the lengths). */
void gen_decoder_reset(gen_decoder *d);

/* Appends tokens[0..n) to sequence `seq` (n >= 1) and leaves the logits of the last one in
 * d->logits + seq*V. RLHF_ERR_INVALID if a token is outside the vocabulary or the sequence
 * would exceed max_len (the message says by how much). */
int gen_decoder_prefill(gen_decoder *d, int seq, const int32_t *tokens, int n, rlhf_error *err);
/* Appends one token to each of n distinct sequences seqs[i] (tokens[i]) in one batched pass and
 * leaves their logits in d->logits + seqs[i]*V. Same errors as prefill. */
int gen_decoder_step(gen_decoder *d, const int *seqs, const int32_t *tokens, int n, rlhf_error *err);
/* Makes sequence dst a copy of src (cache, length and logits row); dst == src is a no-op. */
void gen_decoder_copy(gen_decoder *d, int dst, int src);
/* The logits row of a sequence (V floats). */
static inline float *gen_decoder_logits(const gen_decoder *d, int seq) {
    return d->logits + (size_t)seq * (size_t)d->m->config.vocab_size;
}

/* out (M, OUT) = x (M, IN) . W (+ b) with W (OUT, IN) [out,in] (transposed = 0) or (IN, OUT)
 * [in,out] (transposed = 1); b (OUT) or NULL. Each output element is computed by one thread in
 * a fixed order, so row r's result does not depend on M or the thread count (the decoder's
 * reproducibility rests on this; tests check it). */
void gen_matmul_rows(float *out, const float *x, const float *w, const float *b, int M, int IN, int OUT,
                     int in_out);

/* ---- generation ---- */

typedef enum {
    GEN_STRATEGY_GREEDY = 0, /* argmax at every step (penalties and no-repeat-ngram of
                                `sampling` still apply; its temperature and filters do not) */
    GEN_STRATEGY_SAMPLE = 1, /* the sampler chain of `sampling` */
    GEN_STRATEGY_BEAM = 2,   /* beam search (HF semantics) */
} gen_strategy;

typedef enum {
    GEN_FINISH_NONE = 0,
    GEN_FINISH_EOS,         /* an end-of-sequence id was generated (it is the last id) */
    GEN_FINISH_STOP,        /* a stop string appeared: the candidate ends with the token that
                               completed it (the stop string is part of ids, logprobs and text;
                               text_stop says where it begins, and streaming stops there) */
    GEN_FINISH_LENGTH,      /* max_tokens generated */
    GEN_FINISH_INTERRUPTED, /* the callback returned nonzero or *stop_flag was set */
} gen_finish;

/* "eos", "stop", "max_tokens", "interrupted" ("none" for GEN_FINISH_NONE). */
const char *gen_finish_name(gen_finish f);
/* "greedy", "sample", "beam". */
const char *gen_strategy_name(gen_strategy s);

/* Called once per generated token of each candidate (sampling/greedy; beam search does not
 * stream because beams change until the end). `text` is the newly printable text (complete
 * UTF-8, held back while it could be the start of a stop string; may be empty; NULL without a
 * tokenizer). Returning nonzero stops the whole generation: every unfinished candidate ends
 * with GEN_FINISH_INTERRUPTED. */
typedef int (*gen_token_fn)(void *user, int candidate, int32_t id, const char *text, size_t len, float logprob);

#define GEN_MAX_EOS 8

typedef struct {
    gen_strategy strategy;
    sampler_params sampling;   /* sample: the whole chain; greedy: its penalties and
                                  no_repeat_ngram_size; beam: only no_repeat_ngram_size */
    uint64_t seed;
    int first_index;           /* candidate k uses the rng seeded from (seed, first_index + k) */
    int n;                     /* candidates (beam: beams returned, <= num_beams) */
    int max_tokens;            /* >= 1 */
    int truncate_prompt;       /* 1: drop the oldest prompt tokens when prompt + max_tokens
                                  exceeds the context; 0: refuse with RLHF_ERR_INVALID */
    /* beam search (Hugging Face: score = sum logprobs / length^length_penalty) */
    int num_beams;
    float length_penalty;      /* 1.0 */
    int early_stopping;        /* 1: stop once num_beams hypotheses are finished; 0: stop when
                                  no running beam can beat the worst finished one (HF False) */
    /* stopping */
    int32_t eos_ids[GEN_MAX_EOS]; /* ids that end a candidate */
    int n_eos;                 /* -1: use the model's / tokenizer's EOS; 0: none */
    const char *const *stop;   /* (n_stop) stop strings; need a tokenizer, not with beam search;
                                  borrowed */
    int n_stop;
    /* streaming and interruption (both optional) */
    gen_token_fn on_token;
    void *user;
    volatile sig_atomic_t *stop_flag; /* checked before every step; set by a SIGINT handler */
    const gen_packed *packed;  /* the model's packed step weights (gen_packed_make), or NULL:
                                  each run packs its own */
} gen_params;

/* Defaults: strategy SAMPLE with sampler_params_defaults, seed 0, n 1, max_tokens 128, no
 * truncation, num_beams 1, length_penalty 1, early_stopping 0, n_eos -1, no stop strings. */
void gen_params_defaults(gen_params *p);

typedef struct {
    int32_t *ids;         /* (n_ids) generated tokens only, EOS included when it ended; owned */
    float *logprobs;      /* (n_ids) log p(id) under the model's distribution (padding ids past
                             the tokenizer's vocabulary masked); owned */
    int n_ids;
    double logprob;       /* sum of logprobs */
    double mean_logprob;  /* logprob / n_ids (0 when empty) */
    double score;         /* beam: logprob / n_ids^length_penalty; otherwise logprob */
    char *text;           /* decoded text of ids (without a final EOS): exactly what the tokens
                             say, so ids, logprobs and text describe the same tokens; NULL
                             without a tokenizer; owned, NUL-terminated */
    size_t text_len;
    size_t text_stop;     /* where a matched stop string begins in text (finish STOP), else
                             text_len: text[0..text_stop) is what a person is shown */
    gen_finish finish;
    int index;            /* candidate index (first_index + k) or beam rank */
} gen_candidate;

typedef struct {
    gen_candidate *cands; /* (n) owned; beam: best first */
    int n;
    int n_prompt;         /* prompt tokens actually used */
    int n_dropped;        /* prompt tokens dropped from the left (truncate_prompt) */
    double prefill_ms;    /* wall time of the prefill */
    double decode_ms;     /* wall time of the decoding steps */
    long n_generated;     /* tokens generated over all candidates */
} gen_result;

/* Generates from prompt[0..n_prompt) (n_prompt >= 1). `tok` may be NULL (then no text and no
 * stop strings). On success *out holds n candidates the caller frees with gen_result_free; an
 * interrupted generation still succeeds (finish reasons say so). On error *out is zeroed. */
int gen_run(const model *m, const tokenizer *tok, const int32_t *prompt, int n_prompt, const gen_params *p,
            gen_result *out, rlhf_error *err);
void gen_result_free(gen_result *r);

/* p->n candidates (greedy or sampled; not beam search) for each of n_batch prompts
 * (prompts[j][0..n_prompts[j])) in one decoder: every prompt is prefilled once, then the
 * unfinished candidates of all prompts step together and finished ones drop out, so one
 * prompt's long completion overlaps the others' instead of running alone after them (the
 * online trainers' rollouts). Prompt j samples with seed seeds[j] (NULL: p->seed for all), and
 * out[j] is bit-for-bit what gen_run gives for prompt j with that seed (the step kernels are
 * row-independent). out[j].prefill_ms is prompt j's prefill, decode_ms the whole batch's
 * steps. on_token's candidate is j * n + first_index + k. An error names the prompt; out[] is
 * then zeroed. */
int gen_run_batch(const model *m, const tokenizer *tok, const int32_t *const *prompts, const int *n_prompts, int n_batch,
                  const gen_params *p, const uint64_t *seeds, gen_result *out, rlhf_error *err);

/* The seed of candidate `index` under `seed` (candidate 0 uses `seed` itself). */
uint64_t gen_candidate_seed(uint64_t seed, int index);

#endif
