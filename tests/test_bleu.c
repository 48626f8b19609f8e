/* test_bleu.c — corpus BLEU (src/world/bleu.h) on constructed sentences whose values were
 * worked out by hand (the arithmetic is in each comment; tolerance 1e-9 on a 0..100 scale, the
 * rounding of a double). */
#include <math.h>
#include <stdio.h>

#include "src/world/bleu.h"
#include "test_util.h"

static double one(const char *h, const char *r) {
    bleu_stats s = {0};
    bleu_add(&s, h, r);
    return bleu_score(&s, NULL, NULL);
}

#define NEAR(a, b) (fabs((a) - (b)) < 1e-9)

int main(void) {
    double b = one("the cat sat on the mat", "the cat sat on the mat");
    CHECK(NEAR(b, 100), "identical sentence: 100 (%f)", b);
    /* case and punctuation: "In Spanish , dog is perro ." either way */
    b = one("In Spanish, dog is perro.", "in spanish , dog is PERRO .");
    CHECK(NEAR(b, 100), "lower-cased, punctuation split off: 100 (%f)", b);
    /* p1 = 5/6 (the x2, cat, on, mat), p2 = 3/5 (the cat, on the, the mat), p3 = 1/4 (on the mat),
     * p4 = 0/3 -> exp smoothing 1/(2*3); equal lengths, BP 1:
     * 100 * (5/6 * 3/5 * 1/4 * 1/6)^(1/4) = 37.99178428257963 */
    bleu_stats s = {0};
    bleu_add(&s, "the cat is on the mat", "the cat sat on the mat");
    double p[BLEU_MAX_ORDER], bp;
    b = bleu_score(&s, p, &bp);
    CHECK(NEAR(b, 37.99178428257963), "one substitution: 37.9918 (%.10f)", b);
    CHECK(NEAR(p[0], 500.0 / 6) && NEAR(p[1], 60) && NEAR(p[2], 25) && NEAR(p[3], 100.0 / 6) && NEAR(bp, 1),
          "its precisions 83.33 / 60 / 25 / 16.67 (smoothed), BP 1 (%f %f %f %f, %f)", p[0], p[1], p[2], p[3], bp);
    /* clipping: "the" counts once against a reference that has it once: p1 = 1/4; no 2-, 3-, 4-gram
     * match: 1/(2*3), 1/(4*2), 1/(8*1); longer than the reference, BP 1:
     * 100 * (1/4 * 1/6 * 1/8 * 1/8)^(1/4) = 15.97357760615681 */
    b = one("the the the the", "the cat");
    CHECK(NEAR(b, 15.97357760615681), "clipped counts and exp smoothing: 15.9736 (%.10f)", b);
    /* corpus level: counts are summed before dividing. Sentence 1 matches fully (6/6, 5/5, 4/4,
     * 3/3); sentence 2 "a dog" vs "a big dog ran" adds 2/2 unigrams and 0/1 bigrams. p = 1, 5/6,
     * 1, 1; lengths 8 vs 10: BP = exp(1 - 10/8) = exp(-0.25):
     * 100 * exp(-0.25) * (5/6)^(1/4) = 74.40995947486905 */
    bleu_stats c = {0};
    bleu_add(&c, "the cat sat on the mat", "the cat sat on the mat");
    bleu_add(&c, "a dog", "a big dog ran");
    b = bleu_score(&c, NULL, &bp);
    CHECK(NEAR(b, 74.40995947486905) && NEAR(bp, exp(-0.25)) && c.sentences == 2,
          "corpus counts and brevity penalty: 74.4100 (%.10f, BP %f)", b, bp);
    /* the mean of the two sentence scores would be (100 + 0) / 2: corpus BLEU is not that */
    CHECK(!NEAR(b, 50), "corpus BLEU is not the mean of sentence BLEU");
    /* no trigram in the hypotheses at all: 0 (sacrebleu likewise) */
    b = one("the cat", "the cat sat on the mat");
    CHECK(NEAR(b, 0), "a hypothesis without 3-grams: 0 (%f)", b);
    bleu_stats e = {0};
    CHECK(bleu_score(&e, NULL, NULL) == 0, "an empty corpus: 0");
    return test_finish("bleu");
}
