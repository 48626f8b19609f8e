/* dataset_text.h — a tokenised text corpus for next-token training: a train split, a held-out
 * tail, random training windows and fixed validation windows.
 *
 * The corpus is tokenised once into one int32 array. The last `val_fraction` of it is held out.
 * A training micro-batch is B windows of T+1 consecutive tokens at positions drawn from the
 * caller's rng_t (inputs = the first T, targets = the last T), so the data position of a run is
 * fully described by its rng state: saving the rng with a checkpoint resumes the same stream.
 * Validation uses fixed, evenly spaced, non-random windows of the held-out tail, so every
 * evaluation of a run sees the same text and consumes no randomness. */
#ifndef RLHF_DATASET_TEXT_H
#define RLHF_DATASET_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"
#include "src/core/rng.h"

typedef struct {
    int32_t *tokens;  /* (n_tokens); owned */
    size_t n_tokens;
    size_t n_train;   /* tokens [0, n_train) train; [n_train, n_tokens) validation */
    uint64_t hash;    /* train_hash-style FNV-1a of the tokens (resume refuses other data) */
} dataset_text;

/* Takes ownership of `tokens` (malloc'd, n of them) on success and on error (then it is freed).
 * Splits off the last val_fraction (0 <= f < 1) of the tokens; both parts must hold at least one
 * window of T+1 tokens (the validation part only if f > 0). `what` names the corpus in messages. */
int dataset_text_init(dataset_text *d, int32_t *tokens, size_t n, double val_fraction, int T, const char *what,
                      rlhf_error *err);
void dataset_text_free(dataset_text *d);

/* B random training windows: inputs and targets are (B, T). */
void dataset_text_sample(const dataset_text *d, rng_t *rng, int B, int T, int32_t *inputs, int32_t *targets);

/* Number of non-overlapping validation windows of T+1 tokens (stride T) in the held-out tail. */
size_t dataset_text_val_windows(const dataset_text *d, int T);
/* Fills n_batches fixed validation micro-batches (n_batches * B windows, evenly spaced over the
 * held-out windows, repeating if there are fewer): inputs and targets are (n_batches, B, T). */
void dataset_text_val_batches(const dataset_text *d, int n_batches, int B, int T, int32_t *inputs,
                              int32_t *targets);

#endif
