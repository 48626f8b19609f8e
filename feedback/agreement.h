/* agreement.h — how often annotators agree: Cohen's kappa and Krippendorff's alpha.
 *
 * Labels are nominal categories 0..n_categories-1 (for pair judgements: first side better,
 * second side better, tie, both bad). Kappa compares two annotators over the items both judged,
 * correcting their raw agreement for what their own label frequencies would give by chance.
 * Alpha (nominal) does the same over every annotator at once and tolerates missing judgements:
 * each item judged at least twice contributes its pairs of values to a coincidence matrix.
 * Pure functions; feedback/store_query.c gathers the judgements. */
#ifndef RLHF_FEEDBACK_AGREEMENT_H
#define RLHF_FEEDBACK_AGREEMENT_H

#include <stddef.h>

#define AGREEMENT_MAX_CATEGORIES 16

/* Cohen's kappa of two annotators over n items (a[i], b[i] in [0, n_categories)).
 * *observed (may be NULL) gets the raw fraction of agreement. Returns NaN when kappa is
 * undefined: n == 0, or chance agreement is 1 (both used one and the same label throughout). */
double agreement_cohen_kappa(const int *a, const int *b, size_t n, int n_categories,
                             double *observed);

typedef struct {
    size_t unit; /* which item (any numbering; units need not be contiguous or sorted) */
    int value;   /* its label, in [0, n_categories) */
} agreement_value;

/* Krippendorff's alpha for nominal data over n values. Units with a single value are not
 * pairable and are ignored; *n_pairable (may be NULL) gets the number of values used. Returns
 * NaN when alpha is undefined (fewer than 2 pairable values, or only one category occurs). */
double agreement_krippendorff_alpha(const agreement_value *values, size_t n, int n_categories,
                                    size_t *n_pairable);

#endif
