/* bleu.h — corpus BLEU for the evaluator's translation family.
 *
 * Corpus BLEU-4 as sacrebleu's corpus_bleu computes it: clipped n-gram matches (n = 1..4) and
 * n-gram totals are summed over every sentence of the corpus first, then
 *   BLEU = 100 * BP * exp(mean over n of log p_n),   p_n = matches_n / totals_n,
 *   BP = 1 if the hypotheses are longer than the references, else exp(1 - ref_len / hyp_len),
 * uniform weights, one reference per sentence. Smoothing is sacrebleu's default ("exp"): an
 * order with no match gets p_n = 1 / (2^k * totals_n), k counting the orders without a match
 * so far (so a short corpus with no 4-gram match is not scored 0). An order with no n-gram at
 * all in the hypotheses gives BLEU 0.
 *
 * Tokens: ASCII letters lower-cased; a token is a run of letters, digits and non-ASCII bytes,
 * or one punctuation character; whitespace separates. (Simpler than sacrebleu's 13a, enough
 * for the world's one-sentence answers; the tests state values computed by hand.) */
#ifndef RLHF_WORLD_BLEU_H
#define RLHF_WORLD_BLEU_H

#define BLEU_MAX_ORDER 4

typedef struct {
    long matches[BLEU_MAX_ORDER]; /* clipped n-gram matches, n = index + 1 */
    long totals[BLEU_MAX_ORDER];  /* hypothesis n-grams */
    long hyp_len, ref_len;        /* tokens */
    long sentences;
} bleu_stats;

/* Adds one hypothesis / reference sentence to the corpus counts (s zeroed to start). Tokens
 * past the first 256 of a sentence are ignored. */
void bleu_add(bleu_stats *s, const char *hypothesis, const char *reference);
/* Corpus BLEU in [0, 100]; precisions (BLEU_MAX_ORDER, percent, after smoothing) and the brevity
 * penalty are written when not NULL. 0 for an empty corpus. */
double bleu_score(const bleu_stats *s, double *precisions, double *brevity_penalty);

#endif
