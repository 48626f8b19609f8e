/* test_sampler.c — the sampler chain: exact filter semantics and faithful seeded draws.
 *
 * Faithfulness is a chi-square goodness-of-fit test: N seeded draws from fixed logits through
 * a chain must match the distribution computed independently here (in double) from the HF
 * definitions of temperature, top-k, top-p and min-p, at significance alpha = 0.001. The same
 * statistic must reject a deliberately wrong distribution, so the test has power. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/gen/sampler.h"
#include "tests/test_util.h"

#define V 12
#define DRAWS 200000

/* Upper critical value of chi-square(df) at alpha = 0.001 (Wilson-Hilferty, z = 3.0902);
 * within 1% of the exact quantile for df >= 2. */
static double chi2_crit(int df) {
    const double z = 3.0902;
    double a = 2.0 / (9.0 * df);
    double t = 1.0 - a + z * sqrt(a);
    return df * t * t * t;
}

/* Independent reference: the renormalised distribution after temperature, top-k (ties kept),
 * top-p (crossing token kept) and min-p, in double. */
static void reference_probs(const float *logits, int n, double temp, int top_k, double top_p, double min_p,
                            double *out) {
    double l[V], p[V];
    int keep[V];
    for (int i = 0; i < n; i++) {
        l[i] = (double)(logits[i] / (float)temp);
        keep[i] = 1;
    }
    if (top_k > 0 && top_k < n) {
        double s[V];
        for (int i = 0; i < n; i++) s[i] = l[i];
        for (int i = 0; i < n; i++) /* selection sort descending */
            for (int j = i + 1; j < n; j++)
                if (s[j] > s[i]) {
                    double t = s[i];
                    s[i] = s[j];
                    s[j] = t;
                }
        for (int i = 0; i < n; i++)
            if (l[i] < s[top_k - 1]) keep[i] = 0;
    }
    if (top_p < 1.0) {
        double m = -INFINITY, z = 0;
        for (int i = 0; i < n; i++) if (keep[i] && l[i] > m) m = l[i];
        for (int i = 0; i < n; i++) z += keep[i] ? exp(l[i] - m) : 0;
        for (int i = 0; i < n; i++) p[i] = keep[i] ? exp(l[i] - m) / z : 0;
        /* token i is in the nucleus iff the mass of strictly more probable tokens is < top_p */
        int k2[V];
        for (int i = 0; i < n; i++) {
            double above = 0;
            for (int j = 0; j < n; j++) if (keep[j] && (p[j] > p[i] || (p[j] == p[i] && j < i))) above += p[j];
            k2[i] = keep[i] && above < top_p;
        }
        for (int i = 0; i < n; i++) keep[i] = k2[i];
    }
    if (min_p > 0) {
        double m = -INFINITY;
        for (int i = 0; i < n; i++) if (keep[i] && l[i] > m) m = l[i];
        for (int i = 0; i < n; i++) if (keep[i] && exp(l[i] - m) < min_p) keep[i] = 0;
    }
    double m = -INFINITY, z = 0;
    for (int i = 0; i < n; i++) if (keep[i] && l[i] > m) m = l[i];
    for (int i = 0; i < n; i++) z += keep[i] ? exp(l[i] - m) : 0;
    for (int i = 0; i < n; i++) out[i] = keep[i] ? exp(l[i] - m) / z : 0;
}

/* Chi-square statistic of counts against expected probabilities; bins with expected count
 * below 5 are pooled. Returns the statistic and its degrees of freedom; `impossible` counts
 * draws of tokens with zero expected probability. */
static double chi2_stat(const long *counts, const double *expect_p, int n, long total, int *df, long *impossible) {
    double stat = 0, pool_o = 0, pool_e = 0;
    int bins = 0;
    *impossible = 0;
    for (int i = 0; i < n; i++) {
        double e = expect_p[i] * (double)total;
        if (expect_p[i] == 0) {
            *impossible += counts[i];
            continue;
        }
        if (e < 5) {
            pool_o += (double)counts[i];
            pool_e += e;
            continue;
        }
        stat += (counts[i] - e) * (counts[i] - e) / e;
        bins++;
    }
    if (pool_e > 0) {
        stat += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
        bins++;
    }
    *df = bins - 1;
    return stat;
}

static void draw_counts(sampler_chain *c, const float *logits, uint64_t seed, long *counts) {
    rng_t rng;
    rng_seed(&rng, seed);
    sampler_context ctx = {NULL, 0, &rng};
    memset(counts, 0, V * sizeof *counts);
    for (long d = 0; d < DRAWS; d++) counts[sampler_chain_sample(c, logits, &ctx)]++;
}

static void check_faithful(const char *what, const float *logits, float temp, int top_k, float top_p, float min_p) {
    sampler_params p;
    sampler_params_defaults(&p);
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    sampler_chain c;
    rlhf_error err = {0};
    int rc = sampler_chain_init_params(&c, V, &p, &err);
    CHECK(rc == 0, "%s: chain init: %s", what, err.msg);
    if (rc) return;
    long counts[V];
    draw_counts(&c, logits, 1234, counts);
    double expect[V];
    reference_probs(logits, V, temp, top_k, top_p, min_p, expect);
    int df;
    long impossible;
    double stat = chi2_stat(counts, expect, V, DRAWS, &df, &impossible);
    CHECK(impossible == 0, "%s: %ld draws of filtered-out tokens", what, impossible);
    if (df >= 1) {
        double crit = chi2_crit(df < 2 ? 2 : df);
        CHECK(stat < crit, "%s: chi-square %.2f >= critical %.2f (df %d, alpha 0.001)", what, stat, crit, df);
        /* power: the same draws against the unfiltered temperature-1 distribution must fail */
        double wrong[V];
        reference_probs(logits, V, 1.0, 0, 1.0, 0.0, wrong);
        int df2;
        long imp2;
        double stat2 = chi2_stat(counts, wrong, V, DRAWS, &df2, &imp2);
        CHECK(stat2 > chi2_crit(df2), "%s: test has no power (wrong distribution not rejected, %.2f)", what, stat2);
    }
    sampler_chain_free(&c);
}

static void test_penalties(void) {
    float logits[6] = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 0.0f};
    int32_t hist[5] = {0, 1, 1, 5, 3};
    sampler_chain c;
    rlhf_error err = {0};
    CHECK(sampler_chain_init(&c, 6, &err) == 0, "init");
    CHECK(sampler_chain_add_penalties(&c, 2.0f, 0.0f, 0.0f, -1, &err) == 0, "add penalties");
    sampler_context ctx = {hist, 5, NULL};
    sampler_chain_sample(&c, logits, &ctx);
    /* identity layout: data[i] is token i */
    CHECK(c.list.data[0].logit == 1.0f, "repetition penalty divides a positive logit (%g)", (double)c.list.data[0].logit);
    CHECK(c.list.data[1].logit == -2.0f, "repetition penalty multiplies a negative logit (%g)", (double)c.list.data[1].logit);
    CHECK(c.list.data[2].logit == 0.5f, "unseen token untouched");
    CHECK(c.list.data[3].logit == 1.5f, "seen token 3 divided");
    CHECK(c.list.data[4].logit == -2.0f, "unseen negative untouched");
    for (int i = 0; i < 6; i++) CHECK(c.counts[i] == 0, "penalty scratch left zeroed");
    sampler_chain_free(&c);

    CHECK(sampler_chain_init(&c, 6, &err) == 0, "init");
    CHECK(sampler_chain_add_penalties(&c, 1.0f, 0.5f, 0.25f, -1, &err) == 0, "add penalties");
    sampler_chain_sample(&c, logits, &ctx);
    CHECK(fabsf(c.list.data[1].logit - (-1.0f - 0.5f - 2 * 0.25f)) < 1e-6f, "presence + frequency*count (%g)",
          (double)c.list.data[1].logit);
    CHECK(fabsf(c.list.data[0].logit - (2.0f - 0.75f)) < 1e-6f, "presence + frequency once");
    sampler_chain_free(&c);

    /* last_n = 2 sees only {5, 3} */
    CHECK(sampler_chain_init(&c, 6, &err) == 0, "init");
    CHECK(sampler_chain_add_penalties(&c, 2.0f, 0.0f, 0.0f, 2, &err) == 0, "add");
    sampler_chain_sample(&c, logits, &ctx);
    CHECK(c.list.data[0].logit == 2.0f && c.list.data[3].logit == 1.5f, "penalty_last_n window");
    sampler_chain_free(&c);

    /* penalties after a reordering filter (non-identity path) give the same logits */
    CHECK(sampler_chain_init(&c, 6, &err) == 0, "init");
    CHECK(sampler_chain_add_top_k(&c, 6 - 1, &err) == 0, "add");
    CHECK(sampler_chain_add_penalties(&c, 2.0f, 0.1f, 0.1f, -1, &err) == 0, "add");
    sampler_chain_sample(&c, logits, &ctx);
    for (int i = 0; i < c.list.n; i++)
        if (c.list.data[i].id == 1) CHECK(fabsf(c.list.data[i].logit - (-2.0f - 0.3f)) < 1e-6f, "non-identity penalty");
    for (int i = 0; i < 6; i++) CHECK(c.counts[i] == 0, "scratch zeroed (non-identity)");
    sampler_chain_free(&c);
}

static void test_greedy_and_ties(void) {
    float logits[V];
    for (int i = 0; i < V; i++) logits[i] = (float)(i % 5);
    CHECK(sampler_argmax(logits, V) == 4, "argmax picks the lowest id among ties");
    sampler_params p;
    sampler_params_defaults(&p);
    p.temperature = 0;
    sampler_chain c;
    rlhf_error err = {0};
    CHECK(sampler_chain_init_params(&c, V, &p, &err) == 0, "greedy chain");
    CHECK(sampler_params_is_greedy(&p), "temperature 0 is greedy");
    CHECK(sampler_chain_sample(&c, logits, NULL) == 4, "greedy chain == argmax");
    sampler_chain_free(&c);

    /* top-k keeps ties at the boundary (HF): logits 4 at ids 4 and 9, k = 1 keeps both */
    sampler_params_defaults(&p);
    p.top_k = 1;
    CHECK(sampler_chain_init_params(&c, V, &p, &err) == 0, "top-k chain");
    rng_t rng;
    rng_seed(&rng, 7);
    sampler_context ctx = {NULL, 0, &rng};
    int seen4 = 0, seen9 = 0, other = 0;
    for (int d = 0; d < 400; d++) {
        int32_t t = sampler_chain_sample(&c, logits, &ctx);
        seen4 += t == 4;
        seen9 += t == 9;
        other += t != 4 && t != 9;
    }
    CHECK(seen4 > 0 && seen9 > 0 && other == 0, "top_k=1 keeps both tied maxima (%d, %d, %d)", seen4, seen9, other);
    sampler_chain_free(&c);

    /* top_k = 1 on distinct logits equals greedy for any seed */
    float l2[V];
    rng_seed(&rng, 99);
    for (int i = 0; i < V; i++) l2[i] = rng_normal(&rng);
    CHECK(sampler_chain_init_params(&c, V, &p, &err) == 0, "top-k chain");
    int same = 1;
    for (int s = 0; s < 50; s++) {
        rng_seed(&rng, (uint64_t)s);
        same &= sampler_chain_sample(&c, l2, &ctx) == sampler_argmax(l2, V);
    }
    CHECK(same, "top_k=1 sampling == greedy");
    sampler_chain_free(&c);
}

static void test_reproducible(void) {
    float logits[V];
    rng_t r;
    rng_seed(&r, 3);
    for (int i = 0; i < V; i++) logits[i] = rng_normal(&r);
    sampler_params p;
    sampler_params_defaults(&p);
    p.temperature = 0.9f;
    p.top_p = 0.95f;
    sampler_chain c;
    rlhf_error err = {0};
    CHECK(sampler_chain_init_params(&c, V, &p, &err) == 0, "chain");
    int32_t a[64], b[64], d[64];
    rng_t ra, rb, rd;
    rng_seed(&ra, 42);
    rng_seed(&rb, 42);
    rng_seed(&rd, 43);
    sampler_context ca = {NULL, 0, &ra}, cb = {NULL, 0, &rb}, cd = {NULL, 0, &rd};
    for (int i = 0; i < 64; i++) a[i] = sampler_chain_sample(&c, logits, &ca);
    for (int i = 0; i < 64; i++) {
        b[i] = sampler_chain_sample(&c, logits, &cb);
        d[i] = sampler_chain_sample(&c, logits, &cd);
    }
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed, same draws (interleaving with another rng does not matter)");
    CHECK(memcmp(a, d, sizeof a) != 0, "different seeds differ");
    sampler_chain_free(&c);
}

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* Large vocabulary: top-p's prefilter path must give exactly the nucleus. */
static void test_top_p_large(void) {
    enum { N = 32000 };
    float *logits = malloc(N * sizeof *logits);
    double *p = malloc(N * sizeof *p);
    rng_t r;
    rng_seed(&r, 11);
    for (int i = 0; i < N; i++) logits[i] = 3.0f * rng_normal(&r);
    sampler_chain c;
    rlhf_error err = {0};
    CHECK(sampler_chain_init(&c, N, &err) == 0, "init");
    CHECK(sampler_chain_add_top_p(&c, 0.9f, &err) == 0, "add");
    sampler_chain_sample(&c, logits, NULL);
    double m = -INFINITY, z = 0;
    for (int i = 0; i < N; i++) if (logits[i] > m) m = logits[i];
    for (int i = 0; i < N; i++) z += exp(logits[i] - m);
    for (int i = 0; i < N; i++) p[i] = exp(logits[i] - m) / z;
    /* count the nucleus in double: sort probabilities descending */
    double *sorted = malloc(N * sizeof *sorted);
    for (int i = 0; i < N; i++) sorted[i] = p[i];
    qsort(sorted, N, sizeof *sorted, cmp_desc);
    double cum = 0;
    int n_nucleus = 0;
    for (int i = 0; i < N; i++) {
        if (cum >= 0.9) break;
        cum += sorted[i];
        n_nucleus++;
    }
    CHECK(abs(c.list.n - n_nucleus) <= 1, "top-p nucleus size %d vs reference %d (float vs double cumsum)",
          c.list.n, n_nucleus);
    /* the candidate buffer is a permutation of the vocabulary: the kept front part must be
     * exactly the most probable tokens */
    float min_in = INFINITY, max_out = -INFINITY;
    for (int i = 0; i < c.list.n; i++) min_in = fminf(min_in, c.list.data[i].logit);
    for (int i = c.list.n; i < N; i++) max_out = fmaxf(max_out, c.list.data[i].logit);
    CHECK(min_in >= max_out, "top-p keeps exactly the most probable tokens (%g vs %g)", (double)min_in, (double)max_out);
    /* a flat distribution (the nucleus is most of the vocabulary) */
    for (int i = 0; i < N; i++) logits[i] = 0.01f * rng_normal(&r);
    sampler_chain_sample(&c, logits, NULL);
    z = 0;
    m = -INFINITY;
    for (int i = 0; i < N; i++) if (logits[i] > m) m = logits[i];
    for (int i = 0; i < N; i++) z += exp(logits[i] - m);
    for (int i = 0; i < N; i++) sorted[i] = exp(logits[i] - m) / z;
    qsort(sorted, N, sizeof *sorted, cmp_desc);
    cum = 0;
    n_nucleus = 0;
    for (int i = 0; i < N && cum < 0.9; i++) cum += sorted[i], n_nucleus++;
    CHECK(abs(c.list.n - n_nucleus) <= 2, "flat top-p nucleus size %d vs reference %d", c.list.n, n_nucleus);
    min_in = INFINITY, max_out = -INFINITY;
    for (int i = 0; i < c.list.n; i++) min_in = fminf(min_in, c.list.data[i].logit);
    for (int i = c.list.n; i < N; i++) max_out = fmaxf(max_out, c.list.data[i].logit);
    CHECK(min_in >= max_out, "flat top-p keeps exactly the most probable tokens");
    sampler_chain_free(&c);
    free(sorted);
    free(p);
    free(logits);
}

int main(void) {
    float logits[V];
    rng_t r;
    rng_seed(&r, 2024);
    for (int i = 0; i < V; i++) logits[i] = 1.5f * rng_normal(&r);

    test_greedy_and_ties();
    test_penalties();
    test_reproducible();
    test_top_p_large();
    check_faithful("temperature 0.7", logits, 0.7f, 0, 1.0f, 0.0f);
    check_faithful("temperature 1.5", logits, 1.5f, 0, 1.0f, 0.0f);
    check_faithful("top-k 4", logits, 1.0f, 4, 1.0f, 0.0f);
    check_faithful("top-p 0.8", logits, 1.0f, 0, 0.8f, 0.0f);
    check_faithful("min-p 0.1", logits, 1.0f, 0, 1.0f, 0.1f);
    check_faithful("temperature 0.8 + top-k 8 + top-p 0.9 + min-p 0.05", logits, 0.8f, 8, 0.9f, 0.05f);
    return test_finish("sampler");
}
