/* rng.h — explicit random state (xoshiro256**), seeded, copyable, saved with checkpoints.
 *
 * Every consumer of randomness owns an rng_t; rand() never appears in this project, so a seed
 * fully determines initialisation, data order, dropout-free training and sampling. */
#ifndef RLHF_RNG_H
#define RLHF_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} rng_t;

/* Seeds the state from one 64-bit value (expanded with splitmix64). */
void rng_seed(rng_t *r, uint64_t seed);
/* Uniform 64 random bits. */
uint64_t rng_u64(rng_t *r);
/* Uniform in [0, 1) with 24 bits of precision (float32 exact). */
float rng_float(rng_t *r);
/* Uniform in [0, 1) with 53 bits of precision. */
double rng_double(rng_t *r);
/* Uniform integer in [0, n), unbiased; n > 0. */
uint64_t rng_below(rng_t *r, uint64_t n);
/* Standard normal (Box-Muller, no cached second value so the state alone determines output). */
float rng_normal(rng_t *r);

#endif
