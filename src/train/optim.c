/* optim.c — AdamW as one pass over the parameter buffer (see optim.h for the formulas).
 *
 * The element loop has no branches (the weight-decay factor is hoisted per segment) so it would
 * vectorise, except that GCC keeps sqrtf scalar unless the whole build has -fno-math-errno
 * (pragmas and attributes do not reach it), which costs about 8x on this memory-bound loop; so
 * an AVX path spells the same arithmetic out with intrinsics. The segments are walked inside one
 * parallel region, each split across the threads on 64-byte boundaries, so a step costs one
 * fork/join however many tensors the model has. */
#include "src/train/optim.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX__)
#include <immintrin.h>
#endif

void optim_params_defaults(optim_params *p) {
    memset(p, 0, sizeof *p);
    p->lr = 3e-4f;
    p->min_lr = 3e-5f;
    p->warmup_steps = 0;
    p->total_steps = 1;
    p->beta1 = 0.9f;
    p->beta2 = 0.95f;
    p->eps = 1e-8f;
    p->weight_decay = 0.1f;
    p->grad_clip = 1.0f;
    p->decay_kinds = OPTIM_DECAY_KIND(MODEL_TENSOR_MATRIX);
}

int optim_params_validate(const optim_params *p, rlhf_error *err) {
#define NEED(cond, ...) \
    if (!(cond)) return rlhf_errorf(err, RLHF_ERR_INVALID, __VA_ARGS__)
    NEED(isfinite(p->lr) && p->lr >= 0, "learning rate must be a finite number >= 0 (got %g)", (double)p->lr);
    NEED(isfinite(p->min_lr) && p->min_lr >= 0 && p->min_lr <= p->lr,
         "min learning rate must be in [0, lr=%g] (got %g)", (double)p->lr, (double)p->min_lr);
    NEED(p->warmup_steps >= 0, "warmup steps must be >= 0 (got %ld)", p->warmup_steps);
    NEED(p->total_steps >= 1, "total steps must be >= 1 (got %ld)", p->total_steps);
    NEED(p->beta1 >= 0 && p->beta1 < 1, "beta1 must be in [0, 1) (got %g)", (double)p->beta1);
    NEED(p->beta2 >= 0 && p->beta2 < 1, "beta2 must be in [0, 1) (got %g)", (double)p->beta2);
    NEED(isfinite(p->eps) && p->eps > 0, "epsilon must be > 0 (got %g)", (double)p->eps);
    NEED(isfinite(p->weight_decay) && p->weight_decay >= 0, "weight decay must be >= 0 (got %g)",
         (double)p->weight_decay);
    NEED(isfinite(p->grad_clip), "gradient clip must be finite (got %g)", (double)p->grad_clip);
#undef NEED
    return RLHF_OK;
}

static float *alloc_zeroed(size_t n) {
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *x = aligned_alloc(64, bytes ? bytes : 64);
    if (x) memset(x, 0, bytes);
    return x;
}

int optim_init(optim *o, const optim_params *p, const model_tensor *tensors, int n_tensors, size_t n,
               rlhf_error *err) {
    return optim_init_frozen(o, p, tensors, n_tensors, n, NULL, err);
}

int optim_init_frozen(optim *o, const optim_params *p, const model_tensor *tensors, int n_tensors, size_t n,
                      const unsigned char *frozen, rlhf_error *err) {
    memset(o, 0, sizeof *o);
    int rc = optim_params_validate(p, err);
    if (rc) return rc;
    o->params = *p;
    o->n = n;
    o->segments = malloc((size_t)(n_tensors + 1) * sizeof *o->segments);
    if (!o->segments) {
        optim_free(o);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    }
    /* The tensor table is in offset order; a segment grows while consecutive tensors share the
     * decay and frozen settings, and the padding before a tensor belongs to the segment before it. */
    int ns = 0;
    size_t pos = 0;
    for (int i = 0; i < n_tensors; i++) {
        const model_tensor *t = &tensors[i];
        if (t->offset < pos || t->offset + t->numel > n) {
            optim_free(o);
            return rlhf_errorf(err, RLHF_ERR_SHAPE, "optimizer: tensor %s at offset %zu is out of order or outside "
                               "the %zu-float buffer", t->name, t->offset, n);
        }
        int decay = (p->decay_kinds & OPTIM_DECAY_KIND(t->kind)) != 0;
        int fr = frozen && frozen[i];
        if (ns > 0) o->segments[ns - 1].end = t->offset;
        if (ns > 0 && o->segments[ns - 1].decay == decay && o->segments[ns - 1].frozen == fr) {
            o->segments[ns - 1].end = t->offset + t->numel;
        } else {
            o->segments[ns] = (optim_segment){ns > 0 ? t->offset : 0, t->offset + t->numel, decay, fr, 0};
            ns++;
        }
        pos = t->offset + t->numel;
    }
    if (ns == 0) {
        o->segments[0] = (optim_segment){0, n, 0, 0, 0};
        ns = 1;
    }
    o->segments[ns - 1].end = n;
    o->n_segments = ns;
    for (int s = 0; s < ns; s++) {
        o->segments[s].moff = o->n_moments;
        if (!o->segments[s].frozen) o->n_moments += o->segments[s].end - o->segments[s].begin;
    }
    o->m = alloc_zeroed(o->n_moments);
    o->v = alloc_zeroed(o->n_moments);
    if (!o->m || !o->v) {
        size_t nm = o->n_moments;
        optim_free(o);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory allocating AdamW moments (%zu floats each)", nm);
    }
    return RLHF_OK;
}

void optim_free(optim *o) {
    free(o->m);
    free(o->v);
    free(o->segments);
    memset(o, 0, sizeof *o);
}

float optim_schedule_lr(const optim_params *p, long step) {
    if (step < 0) step = 0;
    if (p->warmup_steps > 0 && step < p->warmup_steps)
        return (float)((double)p->lr * (double)(step + 1) / (double)p->warmup_steps);
    long span = p->total_steps - p->warmup_steps;
    if (span < 1) span = 1;
    double ratio = (double)(step - p->warmup_steps) / (double)span;
    if (ratio > 1.0) ratio = 1.0;
    double coeff = 0.5 * (1.0 + cos(3.14159265358979323846 * ratio));
    return (float)((double)p->min_lr + coeff * ((double)p->lr - (double)p->min_lr));
}

double optim_grad_norm(const float *grads, size_t n, float scale) {
    double sum = 0.0;
#pragma omp parallel for simd schedule(static) reduction(+ : sum)
    for (size_t i = 0; i < n; i++) {
        double g = (double)(grads[i] * scale);
        sum += g * g;
    }
    return sqrt(sum);
}

/* The AdamW element update over n floats (a thread's share of one segment); df is the decay
 * factor 1 - lr*wd, or 1 for segments without weight decay. The AVX path computes exactly what
 * the scalar loop computes (same operations in the same order, sqrt and division correctly
 * rounded, no FMA contraction under ISO C), so results do not depend on which path ran. */
static void adamw_range(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, size_t n,
                        float gs, float b1, float b2, float step_size, float bc2_sqrt, float eps, float df) {
    const float one_b1 = 1.0f - b1, one_b2 = 1.0f - b2;
    size_t i = 0;
#if defined(__AVX__)
    const __m256 vgs = _mm256_set1_ps(gs), vb1 = _mm256_set1_ps(b1), vb2 = _mm256_set1_ps(b2);
    const __m256 v1b1 = _mm256_set1_ps(one_b1), v1b2 = _mm256_set1_ps(one_b2), vss = _mm256_set1_ps(step_size);
    const __m256 vbc2 = _mm256_set1_ps(bc2_sqrt), veps = _mm256_set1_ps(eps), vdf = _mm256_set1_ps(df);
    for (; i + 8 <= n; i += 8) {
        __m256 gi = _mm256_mul_ps(_mm256_loadu_ps(g + i), vgs);
        __m256 mi = _mm256_add_ps(_mm256_mul_ps(vb1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(v1b1, gi));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(vb2, _mm256_loadu_ps(v + i)), _mm256_mul_ps(v1b2, _mm256_mul_ps(gi, gi)));
        _mm256_storeu_ps(m + i, mi);
        _mm256_storeu_ps(v + i, vi);
        __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), vbc2), veps);
        __m256 pi = _mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(p + i), vdf), _mm256_div_ps(_mm256_mul_ps(vss, mi), denom));
        _mm256_storeu_ps(p + i, pi);
    }
#endif
    for (; i < n; i++) {
        float gi = g[i] * gs;
        float mi = b1 * m[i] + one_b1 * gi;
        float vi = b2 * v[i] + one_b2 * (gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * df - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    }
}

/* Norm over the trainable segments only (frozen parameters have no gradient in torch). */
static double trainable_norm(const optim *o, const float *grads, float scale) {
    if (o->n_moments == o->n) return optim_grad_norm(grads, o->n, scale);
    double sum = 0.0;
    for (int s = 0; s < o->n_segments; s++) {
        if (o->segments[s].frozen) continue;
        double x = optim_grad_norm(grads + o->segments[s].begin, o->segments[s].end - o->segments[s].begin, scale);
        sum += x * x;
    }
    return sqrt(sum);
}

int optim_step(optim *o, float *params, const float *grads, float grad_scale, optim_stats *stats,
               rlhf_error *err) {
    const optim_params *p = &o->params;
    double norm = trainable_norm(o, grads, grad_scale);
    if (!isfinite(norm))
        return rlhf_errorf(err, RLHF_ERR_NUMERIC, "optimizer step %ld: gradient norm is %g; parameters left unchanged",
                           o->step + 1, norm);
    float clip = 1.0f;
    if (p->grad_clip > 0) {
        double c = (double)p->grad_clip / (norm + 1e-6);
        if (c < 1.0) clip = (float)c;
    }
    const float lr = optim_schedule_lr(p, o->step);
    const long t = o->step + 1;
    /* Scalars are formed in double and rounded once, as torch does with Python floats. */
    const float step_size = (float)((double)lr / (1.0 - pow((double)p->beta1, (double)t)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow((double)p->beta2, (double)t));
    const float gs = grad_scale * clip;
    const float b1 = p->beta1, b2 = p->beta2, eps = p->eps;
    const float decay_factor = 1.0f - lr * p->weight_decay;
    const optim_segment *segs = o->segments;
    const int nseg = o->n_segments;
#pragma omp parallel
    {
        /* Each thread takes its share of every segment, cut on 16-float (64-byte) boundaries. */
        const size_t nt = (size_t)omp_get_num_threads(), id = (size_t)omp_get_thread_num();
        for (int s = 0; s < nseg; s++) {
            if (segs[s].frozen) continue;
            const size_t len = segs[s].end - segs[s].begin;
            const size_t chunk = ((len + nt - 1) / nt + 15) & ~(size_t)15;
            size_t begin = segs[s].begin + id * chunk, end = begin + chunk;
            if (end > segs[s].end) end = segs[s].end;
            if (begin >= end) continue;
            const size_t mo = segs[s].moff + (begin - segs[s].begin);
            adamw_range(params + begin, grads + begin, o->m + mo, o->v + mo, end - begin, gs, b1, b2,
                        step_size, bc2_sqrt, eps, segs[s].decay ? decay_factor : 1.0f);
        }
    }
    o->step = t;
    if (stats) {
        stats->lr = lr;
        stats->grad_norm = norm;
        stats->clip_coef = clip;
    }
    return RLHF_OK;
}

/* ---- snapshot ---- */

#define OPTIM_MAGIC "RLHFADAM"

/* Without frozen segments the block is "RLHFADAM" n step m[n] v[n]; with them "RLHFADAF"
 * n step n_moments hash(frozen layout) m[n_moments] v[n_moments]. */
#define OPTIM_MAGIC_FROZEN "RLHFADAF"

static uint64_t frozen_layout_hash(const optim *o) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int s = 0; s < o->n_segments; s++) {
        uint64_t w[3] = {o->segments[s].begin, o->segments[s].end, (uint64_t)o->segments[s].frozen};
        for (int k = 0; k < 3; k++) h = (h ^ w[k]) * 0x100000001b3ull;
    }
    return h;
}

size_t optim_state_bytes(const optim *o) {
    return 8 + 8 + 8 + (o->n_moments != o->n ? 16 : 0) + 2 * o->n_moments * sizeof(float);
}

int optim_write(const optim *o, FILE *fp, const char *what, rlhf_error *err) {
    const int fz = o->n_moments != o->n;
    uint64_t hdr[4] = {(uint64_t)o->n, (uint64_t)o->step, (uint64_t)o->n_moments, frozen_layout_hash(o)};
    if (fwrite(fz ? OPTIM_MAGIC_FROZEN : OPTIM_MAGIC, 1, 8, fp) != 8 ||
        fwrite(hdr, sizeof hdr[0], fz ? 4 : 2, fp) != (size_t)(fz ? 4 : 2) ||
        fwrite(o->m, sizeof(float), o->n_moments, fp) != o->n_moments ||
        fwrite(o->v, sizeof(float), o->n_moments, fp) != o->n_moments)
        return rlhf_errorf(err, RLHF_ERR_IO, "%s: writing the AdamW moments failed", what);
    return RLHF_OK;
}

int optim_read(optim *o, FILE *fp, const char *what, rlhf_error *err) {
    char magic[8];
    uint64_t hdr[4] = {0};
    const int fz = o->n_moments != o->n;
    if (fread(magic, 1, 8, fp) != 8 || (memcmp(magic, OPTIM_MAGIC, 8) != 0 && memcmp(magic, OPTIM_MAGIC_FROZEN, 8) != 0))
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: AdamW block is missing or has a bad magic", what);
    const int file_fz = memcmp(magic, OPTIM_MAGIC_FROZEN, 8) == 0;
    if (fread(hdr, sizeof hdr[0], file_fz ? 4 : 2, fp) != (size_t)(file_fz ? 4 : 2))
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: AdamW block header is truncated", what);
    if (hdr[0] != (uint64_t)o->n)
        return rlhf_errorf(err, RLHF_ERR_SHAPE, "%s: AdamW moments have %llu floats but the model needs %zu", what,
                           (unsigned long long)hdr[0], o->n);
    if (file_fz != fz || (fz && (hdr[2] != o->n_moments || hdr[3] != frozen_layout_hash(o))))
        return rlhf_errorf(err, RLHF_ERR_SHAPE, "%s: the AdamW moments were saved with %s frozen parameters than this run has",
                           what, file_fz ? "other" : "no");
    if (fread(o->m, sizeof(float), o->n_moments, fp) != o->n_moments ||
        fread(o->v, sizeof(float), o->n_moments, fp) != o->n_moments)
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: AdamW moments are truncated", what);
    o->step = (long)hdr[1];
    return RLHF_OK;
}
