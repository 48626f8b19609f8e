/* agreement.c — Cohen's kappa and nominal Krippendorff's alpha (see agreement.h).
 *
 * Alpha follows Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": with the
 * coincidence matrix o[c][k] = sum over units u of (number of ordered pairs of values c,k in u)
 * / (m_u - 1), n_c = sum_k o[c][k] and n = sum_c n_c,
 *   alpha = 1 - (n - 1) * sum_{c != k} o[c][k] / sum_{c != k} n_c n_k. */
#include "feedback/agreement.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double agreement_cohen_kappa(const int *a, const int *b, size_t n, int n_categories,
                             double *observed) {
    if (observed) *observed = NAN;
    if (n == 0 || n_categories < 1 || n_categories > AGREEMENT_MAX_CATEGORIES) return NAN;
    double pa[AGREEMENT_MAX_CATEGORIES] = {0}, pb[AGREEMENT_MAX_CATEGORIES] = {0};
    size_t same = 0;
    for (size_t i = 0; i < n; i++) {
        if (a[i] < 0 || a[i] >= n_categories || b[i] < 0 || b[i] >= n_categories) return NAN;
        pa[a[i]] += 1.0;
        pb[b[i]] += 1.0;
        same += a[i] == b[i];
    }
    double po = (double)same / (double)n, pe = 0.0;
    for (int c = 0; c < n_categories; c++) pe += (pa[c] / (double)n) * (pb[c] / (double)n);
    if (observed) *observed = po;
    if (fabs(1.0 - pe) < 1e-15) return NAN;
    return (po - pe) / (1.0 - pe);
}

static int by_unit(const void *x, const void *y) {
    const agreement_value *a = x, *b = y;
    return (a->unit > b->unit) - (a->unit < b->unit);
}

double agreement_krippendorff_alpha(const agreement_value *values, size_t n, int n_categories,
                                    size_t *n_pairable) {
    if (n_pairable) *n_pairable = 0;
    if (n < 2 || n_categories < 1 || n_categories > AGREEMENT_MAX_CATEGORIES) return NAN;
    agreement_value *v = malloc(n * sizeof *v);
    if (!v) return NAN;
    memcpy(v, values, n * sizeof *v);
    qsort(v, n, sizeof *v, by_unit);
    double o[AGREEMENT_MAX_CATEGORIES][AGREEMENT_MAX_CATEGORIES] = {{0}};
    size_t used = 0;
    for (size_t start = 0; start < n;) {
        size_t end = start;
        int counts[AGREEMENT_MAX_CATEGORIES] = {0};
        int bad = 0;
        while (end < n && v[end].unit == v[start].unit) {
            if (v[end].value < 0 || v[end].value >= n_categories) bad = 1;
            else counts[v[end].value]++;
            end++;
        }
        if (bad) {
            free(v);
            return NAN;
        }
        size_t m = end - start;
        if (m >= 2) {
            used += m;
            for (int c = 0; c < n_categories; c++)
                for (int k = 0; k < n_categories; k++)
                    o[c][k] += (double)counts[c] * (double)(counts[k] - (c == k)) / (double)(m - 1);
        }
        start = end;
    }
    free(v);
    if (n_pairable) *n_pairable = used;
    double nc[AGREEMENT_MAX_CATEGORIES] = {0}, total = 0.0, disagree = 0.0, expected = 0.0;
    for (int c = 0; c < n_categories; c++)
        for (int k = 0; k < n_categories; k++) {
            nc[c] += o[c][k];
            if (c != k) disagree += o[c][k];
        }
    for (int c = 0; c < n_categories; c++) total += nc[c];
    for (int c = 0; c < n_categories; c++)
        for (int k = 0; k < n_categories; k++)
            if (c != k) expected += nc[c] * nc[k];
    if (total < 2.0 || expected <= 0.0) return NAN;
    return 1.0 - (total - 1.0) * disagree / expected;
}
