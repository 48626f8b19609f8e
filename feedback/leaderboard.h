/* leaderboard.h — Bradley–Terry strengths from pairwise outcomes, with bootstrap intervals.
 *
 * The model: P(i beats j) = p_i / (p_i + p_j). Strengths are fitted by maximum likelihood with
 * Hunter's (2004) minorization–maximization iteration
 *     p_i <- W_i / sum_j n_ij / (p_i + p_j)
 * where W_i counts i's wins (a tie or a both-bad verdict is half a win for each side, as in
 * Chatbot Arena) and n_ij the games between i and j. A player who never won (or never lost)
 * has no finite maximum, so an optional prior adds `prior` virtual tied games against a fixed
 * reference of strength 1 for every player; it keeps every estimate finite and pulls players
 * with few games toward the middle. Results are theta_i = ln p_i, centred to mean 0, and the
 * Elo-like rating 1000 + 400 log10(p_i / geometric mean). Confidence intervals come from a
 * deterministic (seeded) bootstrap over games. Pure functions; feedback/store_query.c gathers
 * the games from the database. */
#ifndef RLHF_FEEDBACK_LEADERBOARD_H
#define RLHF_FEEDBACK_LEADERBOARD_H

#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"

typedef struct {
    int a, b;       /* players, in [0, n_players), a != b */
    double score_a; /* 1 a won, 0 b won, 0.5 tie or both bad */
} leaderboard_game;

/* theta[n_players] gets the centred log-strengths. prior >= 0 (0 = plain MLE). */
int leaderboard_fit(const leaderboard_game *games, size_t n_games, int n_players, double prior,
                    double *theta, rlhf_error *err);

/* Percentile bootstrap: refits on n_samples resamples (with replacement) of the games drawn
 * from an rng seeded with `seed`; lo/hi[n_players] get the (1-level)/2 and (1+level)/2
 * quantiles of theta. Deterministic for a given seed. */
int leaderboard_bootstrap(const leaderboard_game *games, size_t n_games, int n_players,
                          double prior, int n_samples, uint64_t seed, double level, double *lo,
                          double *hi, rlhf_error *err);

/* The Elo-like rating of a centred log-strength: 1000 + 400 * theta / ln 10. */
double leaderboard_elo(double theta);

#endif
