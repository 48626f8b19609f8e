/* blas_kernel.h — which OpenBLAS kernel this CPU should run, decided from its features.
 *
 * Debian 12's OpenBLAS (0.3.21, DYNAMIC_ARCH) picks its kernel from the CPU's family/model
 * numbers and falls back to an older kernel on CPUs newer than its table (OpenBLAS issue
 * #4267): Prescott (SSE3) on recent Intel Xeons, Haswell (AVX2) on AMD Zen 5 although both have
 * AVX-512. Measured on a Zen 5 here: sgemm 2048^3 at 200 GFLOP/s with Haswell, 370 with
 * SkylakeX. OpenBLAS reads OPENBLAS_CORETYPE once, in its library constructor, so the program
 * (repl/main.c) asks blas_kernel_decide at start-up and re-executes itself once with the
 * variable set when the choice differs from OpenBLAS's own.
 *
 * The decision is a pure function of (OpenBLAS's core name, CPU features, the user's own
 * OPENBLAS_CORETYPE), tested on a table; detecting the features is the only part that touches
 * the hardware (cpuid and xgetbv, so the OS's saving of AVX/AVX-512 state is checked too).
 * Model numbers are never consulted. The user's own setting always wins. */
#ifndef RLHF_BLAS_KERNEL_H
#define RLHF_BLAS_KERNEL_H

#include <stdbool.h>

typedef struct {
    bool sse3, avx, avx2, fma;
    bool avx512f, avx512bw, avx512vl, avx512dq, avx512cd, avx512_bf16;
    bool os_avx;    /* XCR0 has the SSE and AVX state: the OS saves ymm registers */
    bool os_avx512; /* XCR0 also has opmask and zmm state */
} blas_cpu_features;

/* Tiers of OpenBLAS x86-64 kernels, weakest first. */
typedef enum {
    BLAS_TIER_UNKNOWN = 0, /* a core name this table does not know (not x86, or newer) */
    BLAS_TIER_SSE,         /* Prescott, Core2, Nehalem, Barcelona, ... */
    BLAS_TIER_AVX,         /* Sandybridge, Bulldozer, Piledriver, Steamroller, Excavator */
    BLAS_TIER_AVX2,        /* Haswell, Zen */
    BLAS_TIER_AVX512,      /* SkylakeX */
    BLAS_TIER_AVX512_BF16, /* Cooperlake, SapphireRapids */
} blas_tier;

typedef struct {
    const char *force; /* the OPENBLAS_CORETYPE to run with, or NULL to keep OpenBLAS's pick */
    char reason[200];  /* one sentence for `rlhf version --verbose` */
} blas_kernel_choice;

/* Fills *f from cpuid/xgetbv (all false on other architectures). */
void blas_cpu_features_detect(blas_cpu_features *f);

/* The tier of an OpenBLAS core name (case-insensitive), BLAS_TIER_UNKNOWN if not in the table. */
blas_tier blas_core_tier(const char *core_name);

/* The best tier the features allow (needs the OS support bits too). */
blas_tier blas_features_tier(const blas_cpu_features *f);

/* Decides the kernel. `core_name` is what openblas_get_corename() reports; `user_env` the
 * user's OPENBLAS_CORETYPE (NULL or "" when unset). Forces a kernel only when the user set
 * none, the core name is known, and the features allow a strictly higher tier. */
void blas_kernel_decide(const char *core_name, const blas_cpu_features *f, const char *user_env,
                        blas_kernel_choice *out);

/* The environment variable that records OpenBLAS's own pick across the re-execution. */
#define BLAS_ENV_OWN_PICK "RLHF_OPENBLAS_OWN_PICK"

/* Start-up of every program of the project that runs sgemm (rlhf, the benchmarks): sets
 * OMP_WAIT_POLICY=passive and, when the user set no OPENBLAS_CORETYPE and blas_kernel_decide
 * forces one, OPENBLAS_CORETYPE; then re-executes the program once (/proc/self/exe) so the
 * libraries read them at load. The user's own settings always win. Returns only when nothing
 * had to change or the re-execution failed (then the program runs as it is).
 * RLHF_TEST_OPENBLAS_PICK (a test seam) stands for OpenBLAS's own pick. */
void blas_kernel_startup(char **argv);

#endif
