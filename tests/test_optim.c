/* test_optim.c — AdamW against a hand-computed update (in double), global-norm clipping,
 * the warmup + cosine schedule, weight-decay groups from tensor kinds, grad_scale for gradient
 * accumulation, and the moment snapshot round trip. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "src/train/optim.h"
#include "tests/test_util.h"

/* A hand-made layout: a matrix (5 floats), padding (3), a norm (4), a bias (2), an embedding (6). */
static model_tensor g_tensors[4];
#define N_FLOATS 20

static void make_table(void) {
    memset(g_tensors, 0, sizeof g_tensors);
    const char *names[4] = {"w", "ln", "b", "emb"};
    size_t offs[4] = {0, 8, 12, 14}, nums[4] = {5, 4, 2, 6};
    model_tensor_kind kinds[4] = {MODEL_TENSOR_MATRIX, MODEL_TENSOR_NORM, MODEL_TENSOR_BIAS, MODEL_TENSOR_EMBEDDING};
    for (int i = 0; i < 4; i++) {
        snprintf(g_tensors[i].name, sizeof g_tensors[i].name, "%s", names[i]);
        g_tensors[i].ndim = 1;
        g_tensors[i].shape[0] = (int64_t)nums[i];
        g_tensors[i].offset = offs[i];
        g_tensors[i].numel = nums[i];
        g_tensors[i].kind = kinds[i];
        g_tensors[i].layer = -1;
    }
}

static int in_tensor(size_t i) {
    for (int k = 0; k < 4; k++)
        if (i >= g_tensors[k].offset && i < g_tensors[k].offset + g_tensors[k].numel) return k;
    return -1;
}

/* Reference AdamW in double, straight from torch.optim.AdamW's documented algorithm. */
static void ref_step(double *p, double *m, double *v, const double *g, int n, const int *decay, double lr,
                     double wd, double b1, double b2, double eps, long t) {
    for (int i = 0; i < n; i++) {
        if (decay[i]) p[i] -= lr * wd * p[i];
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        double mh = m[i] / (1 - pow(b1, (double)t));
        double vh = v[i] / (1 - pow(b2, (double)t));
        p[i] -= lr * mh / (sqrt(vh) + eps);
    }
}

static void check_quadratic(void) {
    /* loss = 0.5 * sum c_i p_i^2, so g_i = c_i p_i: five AdamW steps with decay on matrices only,
     * constant lr (warmup 0, min_lr = lr), no clipping. */
    optim_params op;
    optim_params_defaults(&op);
    op.lr = 0.05f;
    op.min_lr = 0.05f;
    op.weight_decay = 0.3f;
    op.grad_clip = 0;
    op.total_steps = 5;
    optim o;
    rlhf_error err = {0};
    CHECK(optim_init(&o, &op, g_tensors, 4, N_FLOATS, &err) == 0, "optim_init: %s", err.msg);
    float p[N_FLOATS] = {0}, g[N_FLOATS] = {0};
    double pd[N_FLOATS] = {0}, md[N_FLOATS] = {0}, vd[N_FLOATS] = {0}, gd[N_FLOATS];
    int decay[N_FLOATS] = {0};
    for (int i = 0; i < N_FLOATS; i++) {
        int k = in_tensor((size_t)i);
        if (k < 0) continue;
        p[i] = (float)(0.3 * sin(1.7 * i + 0.2) + (i % 3 == 0 ? -0.5 : 0.4));
        pd[i] = p[i];
        decay[i] = g_tensors[k].kind == MODEL_TENSOR_MATRIX;
    }
    for (long t = 1; t <= 5; t++) {
        for (int i = 0; i < N_FLOATS; i++) {
            double c = 1.0 + 0.25 * (i % 4);
            g[i] = (float)(c * p[i]);
            gd[i] = g[i];
        }
        optim_stats st;
        CHECK(optim_step(&o, p, g, 1.0f, &st, &err) == 0, "step: %s", err.msg);
        CHECK(st.clip_coef == 1.0f, "no clipping when disabled");
        ref_step(pd, md, vd, gd, N_FLOATS, decay, 0.05, 0.3, 0.9, 0.95, 1e-8, t);
        for (int i = 0; i < N_FLOATS; i++) {
            char what[64];
            snprintf(what, sizeof what, "param %d after step %ld", i, t);
            CHECK_CLOSE(p[i], pd[i], 1e-6, 1e-5, what); /* float32 vs double: 1e-5 relative */
            pd[i] = p[i]; /* re-anchor so errors do not compound */
        }
    }
    for (int i = 0; i < N_FLOATS; i++)
        if (in_tensor((size_t)i) < 0) CHECK(p[i] == 0.0f && o.m[i] == 0.0f && o.v[i] == 0.0f, "padding %d stays 0", i);
    CHECK(o.step == 5, "step counter advanced to 5 (got %ld)", o.step);
    optim_free(&o);
    optim_free(&o); /* safe twice */
}

static void check_first_step_by_hand(void) {
    /* With m = v = 0, the first step is p -= lr*wd*p + lr * g/(|g| + eps) = sign(g) * lr for |g| >> eps. */
    optim_params op;
    optim_params_defaults(&op);
    op.lr = 0.1f;
    op.min_lr = 0.1f;
    op.weight_decay = 0.5f;
    op.grad_clip = 0;
    op.decay_kinds = OPTIM_DECAY_KIND(MODEL_TENSOR_MATRIX) | OPTIM_DECAY_KIND(MODEL_TENSOR_NORM);
    optim o;
    rlhf_error err = {0};
    CHECK(optim_init(&o, &op, g_tensors, 4, N_FLOATS, &err) == 0, "optim_init: %s", err.msg);
    float p[N_FLOATS] = {0}, g[N_FLOATS] = {0};
    p[0] = 2.0f; g[0] = 3.0f;    /* matrix: 2 - 0.1*0.5*2 - 0.1 = 1.8 */
    p[8] = 1.0f; g[8] = -1.0f;   /* norm (decayed here): 1 - 0.05 + 0.1 = 1.05 */
    p[12] = 1.0f; g[12] = 0.5f;  /* bias (not decayed): 1 - 0.1 = 0.9 */
    p[14] = -1.0f; g[14] = 0.0f; /* embedding, zero grad: unchanged */
    CHECK(optim_step(&o, p, g, 1.0f, NULL, &err) == 0, "step: %s", err.msg);
    CHECK_CLOSE(p[0], 1.8, 1e-6, 0, "matrix after one step");
    CHECK_CLOSE(p[8], 1.05, 1e-6, 0, "decayed norm after one step");
    CHECK_CLOSE(p[12], 0.9, 1e-6, 0, "bias after one step");
    CHECK(p[14] == -1.0f, "embedding with zero gradient is unchanged (got %.9g)", (double)p[14]);
    optim_free(&o);
}

static void check_decay_groups(void) {
    /* Zero gradients: only the decay moves parameters, by exactly (1 - lr*wd). */
    unsigned sets[3] = {OPTIM_DECAY_KIND(MODEL_TENSOR_MATRIX),
                        OPTIM_DECAY_KIND(MODEL_TENSOR_MATRIX) | OPTIM_DECAY_KIND(MODEL_TENSOR_EMBEDDING),
                        0xffu};
    for (int s = 0; s < 3; s++) {
        optim_params op;
        optim_params_defaults(&op);
        op.lr = 0.1f;
        op.min_lr = 0.1f;
        op.weight_decay = 0.2f;
        op.decay_kinds = sets[s];
        optim o;
        rlhf_error err = {0};
        CHECK(optim_init(&o, &op, g_tensors, 4, N_FLOATS, &err) == 0, "optim_init: %s", err.msg);
        CHECK(o.segments[0].begin == 0 && o.segments[o.n_segments - 1].end == N_FLOATS, "segments cover the buffer");
        for (int k = 1; k < o.n_segments; k++)
            CHECK(o.segments[k].begin == o.segments[k - 1].end && o.segments[k].decay != o.segments[k - 1].decay,
                  "segments are contiguous and merged");
        float p[N_FLOATS], g[N_FLOATS] = {0};
        for (int i = 0; i < N_FLOATS; i++) p[i] = in_tensor((size_t)i) >= 0 ? 1.0f : 0.0f;
        CHECK(optim_step(&o, p, g, 1.0f, NULL, &err) == 0, "step: %s", err.msg);
        for (int i = 0; i < N_FLOATS; i++) {
            int k = in_tensor((size_t)i);
            if (k < 0) {
                CHECK(p[i] == 0.0f, "padding stays 0");
                continue;
            }
            int decayed = (sets[s] & OPTIM_DECAY_KIND(g_tensors[k].kind)) != 0;
            float want = decayed ? 1.0f - 0.1f * 0.2f : 1.0f;
            CHECK(p[i] == want, "set %d: %s[%d] is %.9g, want %.9g", s, g_tensors[k].name, i, (double)p[i], (double)want);
        }
        optim_free(&o);
    }
}

static void check_clipping_and_scale(void) {
    optim_params op;
    optim_params_defaults(&op);
    op.lr = 0.01f;
    op.min_lr = 0.01f;
    op.weight_decay = 0;
    op.grad_clip = 1.0f;
    float g[N_FLOATS] = {0};
    g[0] = 3.0f; g[8] = 4.0f; /* norm 5 */
    CHECK_CLOSE(optim_grad_norm(g, N_FLOATS, 1.0f), 5.0, 0, 1e-12, "global norm");
    CHECK_CLOSE(optim_grad_norm(g, N_FLOATS, 0.5f), 2.5, 0, 1e-12, "global norm with scale");
    /* Clipping to 1 with the raw gradient must equal no clipping with the pre-clipped gradient. */
    optim a, b;
    rlhf_error err = {0};
    CHECK(optim_init(&a, &op, g_tensors, 4, N_FLOATS, &err) == 0, "init: %s", err.msg);
    op.grad_clip = 0;
    CHECK(optim_init(&b, &op, g_tensors, 4, N_FLOATS, &err) == 0, "init: %s", err.msg);
    float pa[N_FLOATS] = {0}, pb[N_FLOATS] = {0}, gb[N_FLOATS] = {0};
    float coef = (float)(1.0 / (5.0 + 1e-6));
    for (int i = 0; i < N_FLOATS; i++) gb[i] = g[i] * coef;
    for (int t = 0; t < 3; t++) {
        optim_stats st;
        CHECK(optim_step(&a, pa, g, 1.0f, &st, &err) == 0, "step");
        CHECK(optim_step(&b, pb, gb, 1.0f, NULL, &err) == 0, "step");
        CHECK_CLOSE(st.grad_norm, 5.0, 0, 1e-12, "reported norm is before clipping");
        CHECK_CLOSE(st.clip_coef, coef, 0, 1e-7, "clip coefficient max_norm/(norm+1e-6)");
    }
    for (int i = 0; i < N_FLOATS; i++) CHECK_CLOSE(pa[i], pb[i], 0, 1e-6, "clipped == pre-scaled");
    CHECK_CLOSE(a.m[0], b.m[0], 0, 1e-6, "moments see the clipped gradient");
    optim_free(&a);
    optim_free(&b);
    /* grad_scale 1/2 on a sum of two micro-batch gradients equals the mean gradient. */
    CHECK(optim_init(&a, &op, g_tensors, 4, N_FLOATS, &err) == 0, "init");
    CHECK(optim_init(&b, &op, g_tensors, 4, N_FLOATS, &err) == 0, "init");
    float sum[N_FLOATS] = {0}, mean[N_FLOATS] = {0};
    for (int i = 0; i < N_FLOATS; i++) {
        sum[i] = (float)(i % 5) - 2.0f;
        mean[i] = sum[i] * 0.5f;
    }
    memset(pa, 0, sizeof pa);
    memset(pb, 0, sizeof pb);
    CHECK(optim_step(&a, pa, sum, 0.5f, NULL, &err) == 0, "step");
    CHECK(optim_step(&b, pb, mean, 1.0f, NULL, &err) == 0, "step");
    CHECK(memcmp(pa, pb, sizeof pa) == 0, "grad_scale 0.5 on the sum == the mean gradient, bit for bit");
    /* A NaN gradient is refused and leaves everything untouched. */
    float before[N_FLOATS];
    memcpy(before, pa, sizeof pa);
    sum[3] = NAN;
    CHECK(optim_step(&a, pa, sum, 1.0f, NULL, &err) == RLHF_ERR_NUMERIC, "NaN gradient refused");
    CHECK(memcmp(pa, before, sizeof pa) == 0 && a.step == 1, "parameters and step untouched after a NaN gradient");
    optim_free(&a);
    optim_free(&b);
}

static void check_schedule(void) {
    optim_params p;
    optim_params_defaults(&p);
    p.lr = 1.0f;
    p.min_lr = 0.1f;
    p.warmup_steps = 4;
    p.total_steps = 14;
    CHECK_CLOSE(optim_schedule_lr(&p, 0), 0.25, 0, 1e-7, "warmup step 0 = lr/4");
    CHECK_CLOSE(optim_schedule_lr(&p, 1), 0.5, 0, 1e-7, "warmup step 1");
    CHECK_CLOSE(optim_schedule_lr(&p, 3), 1.0, 0, 1e-7, "warmup reaches lr at step W-1");
    CHECK_CLOSE(optim_schedule_lr(&p, 4), 1.0, 0, 1e-7, "cosine starts at lr");
    CHECK_CLOSE(optim_schedule_lr(&p, 9), 0.55, 0, 1e-6, "cosine midpoint = (lr+min)/2");
    CHECK_CLOSE(optim_schedule_lr(&p, 14), 0.1, 0, 1e-6, "cosine ends at min_lr");
    CHECK_CLOSE(optim_schedule_lr(&p, 100), 0.1, 0, 1e-6, "after the end: min_lr");
    double want = 0.1 + 0.9 * 0.5 * (1 + cos(3.141592653589793 * 3.0 / 10.0));
    CHECK_CLOSE(optim_schedule_lr(&p, 7), want, 0, 1e-6, "cosine at 3/10");
    p.warmup_steps = 0;
    CHECK_CLOSE(optim_schedule_lr(&p, 0), 1.0, 0, 1e-7, "no warmup: starts at lr");
    for (long s = 1; s < 14; s++)
        CHECK(optim_schedule_lr(&p, s) <= optim_schedule_lr(&p, s - 1), "cosine is non-increasing at %ld", s);
    rlhf_error err = {0};
    p.min_lr = 2.0f;
    CHECK(optim_params_validate(&p, &err) == RLHF_ERR_INVALID && strstr(err.msg, "min learning rate"),
          "min_lr > lr refused with a message naming it: %s", err.msg);
}

static void check_snapshot(void) {
    optim_params op;
    optim_params_defaults(&op);
    optim a, b;
    rlhf_error err = {0};
    CHECK(optim_init(&a, &op, g_tensors, 4, N_FLOATS, &err) == 0, "init");
    CHECK(optim_init(&b, &op, g_tensors, 4, N_FLOATS, &err) == 0, "init");
    float p[N_FLOATS] = {0}, g[N_FLOATS];
    for (int i = 0; i < N_FLOATS; i++) g[i] = 0.1f * (float)i - 0.7f;
    optim_step(&a, p, g, 1.0f, NULL, &err);
    optim_step(&a, p, g, 1.0f, NULL, &err);
    char path[4200];
    snprintf(path, sizeof path, "%s/adam.bin", test_tmpdir());
    FILE *fp = fopen(path, "wb");
    CHECK(fp && optim_write(&a, fp, path, &err) == 0, "write: %s", err.msg);
    long size = fp ? ftell(fp) : 0;
    if (fp) fclose(fp);
    CHECK((size_t)size == optim_state_bytes(&a), "state size %ld", size);
    fp = fopen(path, "rb");
    CHECK(fp && optim_read(&b, fp, path, &err) == 0, "read: %s", err.msg);
    if (fp) fclose(fp);
    CHECK(b.step == 2 && memcmp(a.m, b.m, N_FLOATS * 4) == 0 && memcmp(a.v, b.v, N_FLOATS * 4) == 0,
          "moments and step round-trip exactly");
    /* A truncated snapshot is refused. */
    if (truncate(path, size - 5) == 0) {
        fp = fopen(path, "rb");
        CHECK(fp && optim_read(&b, fp, path, &err) == RLHF_ERR_FORMAT && strstr(err.msg, path),
              "truncated snapshot refused naming the file: %s", err.msg);
        if (fp) fclose(fp);
    }
    optim_free(&a);
    optim_free(&b);
}

static void check_bit_exact_paths(void) {
    /* The vector path and the scalar tail must compute the same floats: 1003 floats (not a
     * multiple of 8 or 16) against the scalar formula written out here, compared bit for bit. */
    enum { N = 1003 };
    model_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "w");
    t.numel = N;
    t.kind = MODEL_TENSOR_MATRIX;
    optim_params op;
    optim_params_defaults(&op);
    op.lr = 0.01f;
    op.min_lr = 0.01f;
    op.grad_clip = 0;
    optim o;
    rlhf_error err = {0};
    CHECK(optim_init(&o, &op, &t, 1, N, &err) == 0, "init");
    static float p[N], g[N], pr[N], mr[N], vr[N];
    for (int i = 0; i < N; i++) {
        p[i] = pr[i] = 0.01f * (float)(i % 17) - 0.05f;
        mr[i] = vr[i] = 0.0f;
    }
    for (long s = 1; s <= 3; s++) {
        for (int i = 0; i < N; i++) g[i] = 0.003f * (float)((i * 7 + (int)s) % 11) - 0.015f;
        CHECK(optim_step(&o, p, g, 0.5f, NULL, &err) == 0, "step");
        const float step_size = (float)((double)0.01f / (1.0 - pow(0.9f, (double)s)));
        const float bc2 = (float)sqrt(1.0 - pow(0.95f, (double)s));
        const float df = 1.0f - 0.01f * 0.1f;
        for (int i = 0; i < N; i++) {
            float gi = g[i] * 0.5f;
            float mi = 0.9f * mr[i] + (1.0f - 0.9f) * gi;
            float vi = 0.95f * vr[i] + (1.0f - 0.95f) * (gi * gi);
            mr[i] = mi;
            vr[i] = vi;
            pr[i] = pr[i] * df - step_size * mi / (sqrtf(vi) / bc2 + 1e-8f);
        }
    }
    CHECK(memcmp(p, pr, sizeof p) == 0 && memcmp(o.m, mr, sizeof mr) == 0 && memcmp(o.v, vr, sizeof vr) == 0,
          "vectorised AdamW equals the scalar formula bit for bit");
    optim_free(&o);
}

/* Frozen tensors: untouched by steps, no moments, not in the norm; the trainable ones step
 * exactly as in an optimizer over only them; snapshots refuse another freezing. */
static void check_frozen(void) {
    optim_params op;
    optim_params_defaults(&op);
    op.total_steps = 3;
    op.grad_clip = 0.5f;
    const unsigned char frozen[4] = {1, 0, 1, 0}; /* w and b frozen */
    optim a, full;
    rlhf_error err = {0};
    CHECK(optim_init_frozen(&a, &op, g_tensors, 4, N_FLOATS, frozen, &err) == 0, "init: %s", err.msg);
    CHECK(optim_init(&full, &op, g_tensors, 4, N_FLOATS, &err) == 0, "init: %s", err.msg);
    CHECK(a.n_moments < N_FLOATS && a.n_moments >= 10, "moments only for trainable floats (%zu)", a.n_moments);
    float p[N_FLOATS], q[N_FLOATS], g[N_FLOATS], gz[N_FLOATS];
    for (int i = 0; i < N_FLOATS; i++) {
        int k = in_tensor((size_t)i);
        p[i] = q[i] = k < 0 ? 0.0f : 0.1f * (float)(i + 1);
        g[i] = k < 0 ? 0.0f : 0.7f - 0.05f * (float)i;
        gz[i] = k < 0 || frozen[k] ? 0.0f : g[i]; /* what torch would see: no gradient when frozen */
    }
    for (int s = 0; s < 3; s++) {
        optim_stats st, sf;
        CHECK(optim_step(&a, p, g, 1.0f, &st, &err) == 0, "step: %s", err.msg);
        CHECK(optim_step(&full, q, gz, 1.0f, &sf, &err) == 0, "step: %s", err.msg);
        CHECK_CLOSE(st.grad_norm, sf.grad_norm, 1e-9, 1e-6, "norm over trainable tensors only");
    }
    for (int i = 0; i < N_FLOATS; i++) {
        int k = in_tensor((size_t)i);
        if (k >= 0 && frozen[k]) CHECK(p[i] == 0.1f * (float)(i + 1), "frozen float %d unchanged", i);
        else CHECK(p[i] == q[i], "trainable float %d: %g vs %g", i, (double)p[i], (double)q[i]);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/frozen.bin", test_tmpdir());
    FILE *fp = fopen(path, "wb");
    CHECK(fp && optim_write(&a, fp, path, &err) == 0, "write: %s", err.msg);
    if (fp) fclose(fp);
    fp = fopen(path, "rb");
    CHECK(fp && optim_read(&full, fp, path, &err) == RLHF_ERR_SHAPE && strstr(err.msg, "frozen"), "other freezing refused: %s",
          err.msg);
    if (fp) fclose(fp);
    optim b;
    CHECK(optim_init_frozen(&b, &op, g_tensors, 4, N_FLOATS, frozen, &err) == 0, "init: %s", err.msg);
    fp = fopen(path, "rb");
    CHECK(fp && optim_read(&b, fp, path, &err) == 0, "read: %s", err.msg);
    if (fp) fclose(fp);
    CHECK(b.step == 3 && memcmp(b.m, a.m, a.n_moments * sizeof(float)) == 0, "snapshot round trip");
    optim_free(&a);
    optim_free(&b);
    optim_free(&full);
}

int main(void) {
    make_table();
    check_frozen();
    check_bit_exact_paths();
    check_quadratic();
    check_first_step_by_hand();
    check_decay_groups();
    check_clipping_and_scale();
    check_schedule();
    check_snapshot();
    return test_finish("optim");
}
