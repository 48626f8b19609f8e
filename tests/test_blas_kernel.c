/* test_blas_kernel.c — the OpenBLAS kernel decision on a table of (OpenBLAS's pick, CPU
 * features, the user's OPENBLAS_CORETYPE) cases: forced only when the user set nothing, the pick
 * is known, and the features (with the OS's support) allow a strictly better tier. */
#include <string.h>

#include "src/core/blas_kernel.h"
#include "tests/test_util.h"

enum { NONE, SSE3, AVX2, AVX512, AVX512BF16, AVX512_NO_OS, AVX512_PARTIAL };

static blas_cpu_features feats(int kind) {
    blas_cpu_features f;
    memset(&f, 0, sizeof f);
    if (kind == NONE) return f;
    f.sse3 = true;
    if (kind == SSE3) return f;
    f.avx = f.avx2 = f.fma = f.os_avx = true;
    if (kind == AVX2) return f;
    f.avx512f = f.avx512bw = f.avx512vl = f.avx512dq = f.avx512cd = f.os_avx512 = true;
    if (kind == AVX512_NO_OS) f.os_avx512 = false;   /* the OS does not save zmm state */
    if (kind == AVX512_PARTIAL) f.avx512bw = false;  /* Knights Landing style: no BW/VL */
    if (kind == AVX512BF16) f.avx512_bf16 = true;
    return f;
}

int main(void) {
    static const struct {
        const char *pick, *user;
        int features;
        const char *want; /* NULL: keep OpenBLAS's pick */
    } cases[] = {
        {"Prescott", NULL, AVX512, "SkylakeX"},        /* the Xeon of OpenBLAS issue #4267 */
        {"Prescott", NULL, AVX512BF16, "Cooperlake"},
        {"Prescott", "", AVX512BF16, "Cooperlake"},    /* an empty variable counts as unset */
        {"Haswell", NULL, AVX512BF16, "Cooperlake"},   /* a Zen 5 OpenBLAS does not know */
        {"Zen", NULL, AVX512, "SkylakeX"},
        {"Prescott", NULL, AVX2, "Haswell"},
        {"Nehalem", NULL, AVX2, "Haswell"},
        {"Sandybridge", NULL, AVX2, "Haswell"},
        {"Prescott", "Haswell", AVX512BF16, NULL},     /* the user's setting wins */
        {"Prescott", "Prescott", AVX512, NULL},
        {"SkylakeX", NULL, AVX512, NULL},              /* already the best */
        {"Cooperlake", NULL, AVX512BF16, NULL},
        {"SapphireRapids", NULL, AVX512BF16, NULL},    /* better than anything we would force */
        {"cooperlake", NULL, AVX512BF16, NULL},        /* names compare case-insensitively */
        {"Haswell", NULL, AVX2, NULL},
        {"Prescott", NULL, SSE3, NULL},                /* no AVX2: nothing better to force */
        {"Prescott", NULL, NONE, NULL},
        {"Prescott", NULL, AVX512_NO_OS, "Haswell"},   /* AVX-512 unusable without OS support */
        {"Haswell", NULL, AVX512_NO_OS, NULL},
        {"Haswell", NULL, AVX512_PARTIAL, NULL},       /* SkylakeX needs BW, VL, DQ and CD */
        {"NeoverseN1", NULL, AVX512, NULL},            /* not in our table: kept */
        {NULL, NULL, AVX512, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        blas_cpu_features f = feats(cases[i].features);
        blas_kernel_choice ch;
        memset(&ch, 0x5a, sizeof ch);
        blas_kernel_decide(cases[i].pick, &f, cases[i].user, &ch);
        const char *want = cases[i].want, *got = ch.force;
        CHECK((want == NULL && got == NULL) || (want && got && strcmp(want, got) == 0),
              "case %zu (pick %s, user %s, features %d): forced %s, want %s", i,
              cases[i].pick ? cases[i].pick : "NULL", cases[i].user ? cases[i].user : "unset",
              cases[i].features, got ? got : "nothing", want ? want : "nothing");
        CHECK(memchr(ch.reason, '\0', sizeof ch.reason) && strlen(ch.reason) > 10,
              "case %zu has a reason", i);
        if (got) CHECK(strstr(ch.reason, got) != NULL, "case %zu: the reason names %s", i, got);
    }
    CHECK(blas_core_tier("Haswell") == BLAS_TIER_AVX2, "Haswell is the AVX2 tier");
    CHECK(blas_core_tier("Whatever") == BLAS_TIER_UNKNOWN, "unknown names are unknown");

    /* The detected features are consistent with each other on whatever CPU runs this. */
    blas_cpu_features d;
    blas_cpu_features_detect(&d);
    CHECK(!d.os_avx512 || d.os_avx, "AVX-512 OS state implies AVX OS state");
    CHECK(blas_features_tier(&d) != BLAS_TIER_AVX512_BF16 || d.avx512_bf16, "BF16 tier needs avx512_bf16");
    return test_finish("blas_kernel");
}
