/* test_rng.c — the RNG is deterministic per seed, copyable, and uniform enough. */
#include "src/core/rng.h"
#include "tests/test_util.h"

int main(void) {
    rng_t a, b;
    rng_seed(&a, 42);
    rng_seed(&b, 42);
    int same = 1;
    for (int i = 0; i < 1000; i++) same &= rng_u64(&a) == rng_u64(&b);
    CHECK(same, "same seed gives the same stream");

    rng_t c = a; /* a copy continues identically: checkpoints save the state by value */
    CHECK(rng_u64(&c) == rng_u64(&a), "copied state continues the same stream");

    rng_seed(&b, 43);
    CHECK(rng_u64(&a) != rng_u64(&b), "different seeds differ");

    /* uniformity of rng_below over 10 buckets: chi-square with 9 dof, 0.1%% critical value 27.88 */
    long counts[10] = {0};
    const int n = 100000;
    for (int i = 0; i < n; i++) counts[rng_below(&a, 10)]++;
    double chi2 = 0;
    for (int k = 0; k < 10; k++) chi2 += (counts[k] - n / 10.0) * (counts[k] - n / 10.0) / (n / 10.0);
    CHECK(chi2 < 27.88, "rng_below uniform: chi2 %.2f", chi2);

    double sum = 0, sumsq = 0;
    for (int i = 0; i < n; i++) {
        double x = rng_normal(&a);
        sum += x;
        sumsq += x * x;
    }
    double mean = sum / n, var = sumsq / n - mean * mean;
    CHECK(fabs(mean) < 0.02 && fabs(var - 1) < 0.03, "normal mean %.4f var %.4f", mean, var);
    float f = 0;
    int in_range = 1;
    for (int i = 0; i < n; i++) {
        f = rng_float(&a);
        in_range &= f >= 0.0f && f < 1.0f;
    }
    CHECK(in_range, "rng_float in [0,1)");
    return test_finish("test_rng");
}
