/* dataset_text.c — train/validation split, random training windows, fixed validation windows. */
#include "src/train/dataset_text.h"

#include <stdlib.h>
#include <string.h>

#include "src/train/train.h"

int dataset_text_init(dataset_text *d, int32_t *tokens, size_t n, double val_fraction, int T, const char *what,
                      rlhf_error *err) {
    memset(d, 0, sizeof *d);
    if (!(val_fraction >= 0.0 && val_fraction < 1.0)) {
        free(tokens);
        return rlhf_errorf(err, RLHF_ERR_INVALID, "validation fraction must be in [0, 1) (got %g)", val_fraction);
    }
    size_t n_val = (size_t)((double)n * val_fraction);
    size_t n_train = n - n_val;
    if (n_train < (size_t)T + 1) {
        free(tokens);
        return rlhf_errorf(err, RLHF_ERR_INVALID,
                           "%s: %zu training tokens are fewer than one window of context+1 = %d tokens", what,
                           n_train, T + 1);
    }
    if (val_fraction > 0 && n_val < (size_t)T + 1) {
        free(tokens);
        return rlhf_errorf(err, RLHF_ERR_INVALID,
                           "%s: the held-out %g of %zu tokens (%zu) is shorter than one window of %d tokens; "
                           "raise the validation fraction or lower the context",
                           what, val_fraction, n, n_val, T + 1);
    }
    d->tokens = tokens;
    d->n_tokens = n;
    d->n_train = n_train;
    d->hash = train_hash(tokens, n * sizeof *tokens);
    return RLHF_OK;
}

void dataset_text_free(dataset_text *d) {
    free(d->tokens);
    memset(d, 0, sizeof *d);
}

void dataset_text_sample(const dataset_text *d, rng_t *rng, int B, int T, int32_t *inputs, int32_t *targets) {
    const uint64_t starts = d->n_train - (size_t)T; /* window [s, s+T] must fit in the train split */
    for (int b = 0; b < B; b++) {
        size_t s = (size_t)rng_below(rng, starts);
        memcpy(inputs + (size_t)b * T, d->tokens + s, (size_t)T * sizeof(int32_t));
        memcpy(targets + (size_t)b * T, d->tokens + s + 1, (size_t)T * sizeof(int32_t));
    }
}

size_t dataset_text_val_windows(const dataset_text *d, int T) {
    size_t n_val = d->n_tokens - d->n_train;
    return n_val < (size_t)T + 1 ? 0 : (n_val - 1) / (size_t)T;
}

void dataset_text_val_batches(const dataset_text *d, int n_batches, int B, int T, int32_t *inputs,
                              int32_t *targets) {
    size_t nw = dataset_text_val_windows(d, T);
    size_t want = (size_t)n_batches * (size_t)B;
    for (size_t k = 0; k < want; k++) {
        size_t w = nw ? (want <= nw ? k * nw / want : k % nw) : 0;
        size_t s = d->n_train + w * (size_t)T;
        memcpy(inputs + k * T, d->tokens + s, (size_t)T * sizeof(int32_t));
        memcpy(targets + k * T, d->tokens + s + 1, (size_t)T * sizeof(int32_t));
    }
}
