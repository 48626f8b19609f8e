/* ranking.h — what a ranking means: parsing "B > A = C > D" and deriving its pairs.
 *
 * A ranking orders k >= 2 candidates of one prompt; equal ranks are ties. It is stored as
 * dense ranks (1 best, then 2, ...), one per candidate in the order they were shown, and it
 * implies k(k-1)/2 pairwise comparisons, of which the tied ones carry no preference and are
 * excluded (and counted). Pure functions, no database: feedback/store.c stores the result. */
#ifndef RLHF_FEEDBACK_RANKING_H
#define RLHF_FEEDBACK_RANKING_H

#include <stddef.h>

#include "src/core/error.h"

#define RANKING_MAX_ITEMS 26 /* candidates are labelled A..Z */

/* Parses a ranking of the k candidates labelled A, B, C, ... (case-insensitive, spaces
 * ignored), e.g. "B > A = C > D", into dense ranks: ranks[i] is the rank of candidate i
 * (B=1, A=2, C=2, D=3). Every label must appear exactly once. */
int ranking_parse(const char *spec, int k, int *ranks, rlhf_error *err);

/* Rewrites positive ranks as dense ranks keeping their order (1, 3, 3, 7 -> 1, 2, 2, 3).
 * RLHF_ERR_INVALID unless 2 <= k <= RANKING_MAX_ITEMS and every rank is >= 1. */
int ranking_normalize(int *ranks, int k, rlhf_error *err);

/* Formats dense ranks back as "B > A = C > D" into buf (truncated to size). */
void ranking_format(const int *ranks, int k, char *buf, size_t size);

typedef struct {
    int chosen;   /* index of the better candidate */
    int rejected; /* index of the worse one */
    int margin;   /* rank distance, >= 1 */
} ranking_pair;

/* Enumerates the pairs for i < j in shown order: a tie is skipped and counted in *n_tied, any
 * other pair is written to out (room for k(k-1)/2). Returns the number of pairs written. */
size_t ranking_derive_pairs(const int *ranks, int k, ranking_pair *out, size_t *n_tied);

#endif
