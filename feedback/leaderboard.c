/* leaderboard.c — Bradley–Terry by minorization–maximization, and its bootstrap (see
 * leaderboard.h). Games are first folded into a win matrix, so a fit costs O(P^2) per
 * iteration whatever the number of games. */
#include "feedback/leaderboard.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/rng.h"

#define BT_MAX_ITER 20000
#define BT_TOL 1e-11 /* largest change of ln p between iterations at convergence */

/* wins[i*P+j]: how much i won against j (ties add 0.5 to both). */
static void fold(const leaderboard_game *games, const size_t *pick, size_t n_games, int P,
                 double *wins) {
    memset(wins, 0, (size_t)P * (size_t)P * sizeof *wins);
    for (size_t g = 0; g < n_games; g++) {
        const leaderboard_game *x = &games[pick ? pick[g] : g];
        wins[(size_t)x->a * (size_t)P + (size_t)x->b] += x->score_a;
        wins[(size_t)x->b * (size_t)P + (size_t)x->a] += 1.0 - x->score_a;
    }
}

static void fit_matrix(const double *wins, int P, double prior, double *p, double *theta) {
    for (int i = 0; i < P; i++) p[i] = 1.0;
    for (int iter = 0; iter < BT_MAX_ITER; iter++) {
        double change = 0.0;
        for (int i = 0; i < P; i++) {
            double w = 0.5 * prior, denom = prior / (p[i] + 1.0);
            for (int j = 0; j < P; j++) {
                if (j == i) continue;
                double n_ij = wins[(size_t)i * (size_t)P + (size_t)j] + wins[(size_t)j * (size_t)P + (size_t)i];
                w += wins[(size_t)i * (size_t)P + (size_t)j];
                if (n_ij > 0) denom += n_ij / (p[i] + p[j]);
            }
            if (denom <= 0.0) continue; /* no games and no prior: leave it where it is */
            double next = w / denom;
            if (next < 1e-300) next = 1e-300; /* never won and no prior: heads to 0 */
            double d = fabs(log(next) - log(p[i]));
            if (d > change) change = d;
            p[i] = next;
        }
        if (prior <= 0.0) { /* without the reference player the scale is free: fix it */
            double mean = 0.0;
            for (int i = 0; i < P; i++) mean += log(p[i]);
            mean /= P;
            for (int i = 0; i < P; i++) p[i] = exp(log(p[i]) - mean);
        }
        if (change < BT_TOL) break;
    }
    double mean = 0.0;
    for (int i = 0; i < P; i++) mean += log(p[i]);
    mean /= P;
    for (int i = 0; i < P; i++) theta[i] = log(p[i]) - mean;
}

static int check_games(const leaderboard_game *games, size_t n_games, int P, double prior,
                       rlhf_error *err) {
    if (P < 1) return rlhf_errorf(err, RLHF_ERR_INVALID, "leaderboard: no players");
    if (prior < 0 || !isfinite(prior))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "leaderboard: prior must be >= 0");
    for (size_t g = 0; g < n_games; g++) {
        const leaderboard_game *x = &games[g];
        if (x->a < 0 || x->a >= P || x->b < 0 || x->b >= P || x->a == x->b ||
            !(x->score_a >= 0.0 && x->score_a <= 1.0))
            return rlhf_errorf(err, RLHF_ERR_INVALID, "leaderboard: game %zu is malformed", g);
    }
    return 0;
}

int leaderboard_fit(const leaderboard_game *games, size_t n_games, int n_players, double prior,
                    double *theta, rlhf_error *err) {
    int rc = check_games(games, n_games, n_players, prior, err);
    if (rc) return rc;
    size_t P = (size_t)n_players;
    double *wins = malloc(P * P * sizeof *wins), *p = malloc(P * sizeof *p);
    if (!wins || !p) {
        free(wins);
        free(p);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "leaderboard: out of memory");
    }
    fold(games, NULL, n_games, n_players, wins);
    fit_matrix(wins, n_players, prior, p, theta);
    free(wins);
    free(p);
    return 0;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Linear-interpolated quantile q of sorted v[n]. */
static double quantile(const double *v, int n, double q) {
    if (n == 1) return v[0];
    double pos = q * (n - 1);
    int i = (int)floor(pos);
    if (i >= n - 1) return v[n - 1];
    double f = pos - i;
    return v[i] * (1.0 - f) + v[i + 1] * f;
}

int leaderboard_bootstrap(const leaderboard_game *games, size_t n_games, int n_players,
                          double prior, int n_samples, uint64_t seed, double level, double *lo,
                          double *hi, rlhf_error *err) {
    int rc = check_games(games, n_games, n_players, prior, err);
    if (rc) return rc;
    if (n_samples < 1 || !(level > 0.0 && level < 1.0))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "leaderboard: need >= 1 bootstrap samples and 0 < level < 1");
    size_t P = (size_t)n_players;
    double *wins = malloc(P * P * sizeof *wins), *p = malloc(P * sizeof *p);
    double *theta = malloc(P * sizeof *theta);
    double *samples = malloc(P * (size_t)n_samples * sizeof *samples); /* [player][sample] */
    size_t *pick = malloc((n_games ? n_games : 1) * sizeof *pick);
    if (!wins || !p || !theta || !samples || !pick) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "leaderboard: out of memory");
        goto done;
    }
    rng_t rng;
    rng_seed(&rng, seed);
    for (int s = 0; s < n_samples; s++) {
        for (size_t g = 0; g < n_games; g++) pick[g] = (size_t)rng_below(&rng, n_games);
        fold(games, pick, n_games, n_players, wins);
        fit_matrix(wins, n_players, prior, p, theta);
        for (size_t i = 0; i < P; i++) samples[i * (size_t)n_samples + (size_t)s] = theta[i];
    }
    for (size_t i = 0; i < P; i++) {
        double *v = samples + i * (size_t)n_samples;
        qsort(v, (size_t)n_samples, sizeof *v, cmp_double);
        lo[i] = quantile(v, n_samples, (1.0 - level) / 2.0);
        hi[i] = quantile(v, n_samples, (1.0 + level) / 2.0);
    }
done:
    free(wins);
    free(p);
    free(theta);
    free(samples);
    free(pick);
    return rc;
}

double leaderboard_elo(double theta) { return 1000.0 + 400.0 * theta / log(10.0); }
