/* blas_kernel.c — the OpenBLAS kernel decision (see blas_kernel.h). */
#include "src/core/blas_kernel.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <strings.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned long long read_xcr0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

void blas_cpu_features_detect(blas_cpu_features *f) {
    memset(f, 0, sizeof *f);
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    f->sse3 = (c >> 0) & 1;
    f->fma = (c >> 12) & 1;
    bool osxsave = (c >> 27) & 1;
    f->avx = (c >> 28) & 1;
    if (osxsave) {
        unsigned long long xcr0 = read_xcr0();
        f->os_avx = (xcr0 & 0x6) == 0x6;
        f->os_avx512 = f->os_avx && (xcr0 & 0xe0) == 0xe0;
    }
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f->avx2 = (b >> 5) & 1;
        f->avx512f = (b >> 16) & 1;
        f->avx512dq = (b >> 17) & 1;
        f->avx512cd = (b >> 28) & 1;
        f->avx512bw = (b >> 30) & 1;
        f->avx512vl = (b >> 31) & 1;
        __cpuid_count(7, 1, a, b, c, d);
        f->avx512_bf16 = (a >> 5) & 1;
    }
}
#else
void blas_cpu_features_detect(blas_cpu_features *f) { memset(f, 0, sizeof *f); }
#endif

/* OpenBLAS 0.3.21's x86-64 core names (driver/others/dynamic.c corename[]), by tier. */
static const struct {
    const char *name;
    blas_tier tier;
} k_cores[] = {
    {"Katmai", BLAS_TIER_SSE},      {"Coppermine", BLAS_TIER_SSE}, {"Northwood", BLAS_TIER_SSE},
    {"Prescott", BLAS_TIER_SSE},    {"Banias", BLAS_TIER_SSE},     {"Atom", BLAS_TIER_SSE},
    {"Core2", BLAS_TIER_SSE},       {"Penryn", BLAS_TIER_SSE},     {"Dunnington", BLAS_TIER_SSE},
    {"Nehalem", BLAS_TIER_SSE},     {"Athlon", BLAS_TIER_SSE},     {"Opteron", BLAS_TIER_SSE},
    {"Opteron_SSE3", BLAS_TIER_SSE}, {"Barcelona", BLAS_TIER_SSE}, {"Nano", BLAS_TIER_SSE},
    {"Bobcat", BLAS_TIER_SSE},
    {"Sandybridge", BLAS_TIER_AVX}, {"Bulldozer", BLAS_TIER_AVX},  {"Piledriver", BLAS_TIER_AVX},
    {"Steamroller", BLAS_TIER_AVX}, {"Excavator", BLAS_TIER_AVX},
    {"Haswell", BLAS_TIER_AVX2},    {"Zen", BLAS_TIER_AVX2},
    {"SkylakeX", BLAS_TIER_AVX512},
    {"Cooperlake", BLAS_TIER_AVX512_BF16}, {"SapphireRapids", BLAS_TIER_AVX512_BF16},
};

blas_tier blas_core_tier(const char *core_name) {
    if (!core_name) return BLAS_TIER_UNKNOWN;
    for (size_t i = 0; i < sizeof k_cores / sizeof k_cores[0]; i++)
        if (strcasecmp(core_name, k_cores[i].name) == 0) return k_cores[i].tier;
    return BLAS_TIER_UNKNOWN;
}

blas_tier blas_features_tier(const blas_cpu_features *f) {
    bool avx512 = f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq && f->avx512cd;
    if (avx512 && f->os_avx512 && f->avx2 && f->fma)
        return f->avx512_bf16 ? BLAS_TIER_AVX512_BF16 : BLAS_TIER_AVX512;
    if (f->avx2 && f->fma && f->os_avx) return BLAS_TIER_AVX2;
    if (f->avx && f->os_avx) return BLAS_TIER_AVX;
    if (f->sse3) return BLAS_TIER_SSE;
    return BLAS_TIER_UNKNOWN;
}

/* The kernel forced for a tier. Cooperlake is SkylakeX's sgemm plus bf16 kernels, so it is the
 * pick when bf16 is there; SapphireRapids (AMX) is never forced: AMX is not a cpuid bit we test.
 * AVX and SSE tiers are not forced: OpenBLAS's own pick is at least as good there. */
static const char *tier_kernel(blas_tier t) {
    switch (t) {
    case BLAS_TIER_AVX512_BF16: return "Cooperlake";
    case BLAS_TIER_AVX512: return "SkylakeX";
    case BLAS_TIER_AVX2: return "Haswell";
    default: return NULL;
    }
}

void blas_kernel_decide(const char *core_name, const blas_cpu_features *f, const char *user_env,
                        blas_kernel_choice *out) {
    out->force = NULL;
    const char *core = core_name ? core_name : "(unknown)";
    if (user_env && *user_env) {
        snprintf(out->reason, sizeof out->reason, "OPENBLAS_CORETYPE=%s was set by the user and is kept", user_env);
        return;
    }
    blas_tier have = blas_core_tier(core_name), can = blas_features_tier(f);
    if (have == BLAS_TIER_UNKNOWN) {
        snprintf(out->reason, sizeof out->reason, "OpenBLAS's pick %s is not in our table; kept", core);
        return;
    }
    const char *best = tier_kernel(can);
    if (!best || can <= have) {
        snprintf(out->reason, sizeof out->reason, "OpenBLAS's pick %s is the best kernel this CPU's features allow", core);
        return;
    }
    out->force = best;
    snprintf(out->reason, sizeof out->reason,
             "OpenBLAS picked %s from the CPU model number, but the CPU has %s: running %s", core,
             can >= BLAS_TIER_AVX512 ? (can == BLAS_TIER_AVX512_BF16 ? "AVX-512 with BF16" : "AVX-512")
                                     : "AVX2 and FMA",
             best);
}

/* Both variables are read once, when their library loads (before main), hence the
 * re-execution.
 * - OMP_WAIT_POLICY: libgomp's default spins at every barrier, and on a busy 2-core machine a
 *   spinning thread steals the core its partner needs: measured 23x slower on a tiny model and
 *   1.6x slower on a d288 training step than with the passive policy.
 * - OPENBLAS_CORETYPE: see the top of blas_kernel.h. */
void blas_kernel_startup(char **argv) {
    int changed = 0;
    if (!getenv("OMP_WAIT_POLICY") && setenv("OMP_WAIT_POLICY", "passive", 1) == 0) changed = 1;
    const char *user = getenv("OPENBLAS_CORETYPE");
    if (!user || !*user) {
        blas_cpu_features f;
        blas_cpu_features_detect(&f);
        blas_kernel_choice ch;
        const char *own = getenv("RLHF_TEST_OPENBLAS_PICK");
        if (!own || !*own) own = openblas_get_corename();
        blas_kernel_decide(own, &f, NULL, &ch);
        if (ch.force && setenv(BLAS_ENV_OWN_PICK, own, 1) == 0 && setenv("OPENBLAS_CORETYPE", ch.force, 1) == 0)
            changed = 1;
    }
    if (changed) execv("/proc/self/exe", argv); /* returns only on failure: run as we are */
}
