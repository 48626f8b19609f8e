/* sampler.c — the sampler chain and its built-in samplers (see sampler.h for the semantics).
 *
 * Every built-in works in place on the chain's candidate list and keeps its flags honest:
 * `identity` is dropped as soon as anything is filtered or moved, `sorted` is set only by a
 * full descending sort, `has_p` only by a softmax over the live logits (and kept while only
 * filtering follows: the survivors' p stay proportional to exp(logit), which is all a draw
 * needs; anything that changes a logit clears it). Sorting uses a total
 * order (logit descending, then id ascending) so the result never depends on the sort
 * algorithm, and the draw walks the list in its current order, so seeded draws reproduce. */
#include "src/gen/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void sampler_params_defaults(sampler_params *p) {
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->repeat_penalty = 1.0f;
    p->penalty_last_n = -1;
}

int sampler_params_validate(const sampler_params *p, rlhf_error *err) {
    if (!isfinite(p->temperature))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "temperature must be finite (got %g)", (double)p->temperature);
    if (!(p->top_p > 0.0f) || !isfinite(p->top_p))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "top_p must be in (0, 1] (got %g)", (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "min_p must be in [0, 1] (got %g)", (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f) || !isfinite(p->repeat_penalty))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "repeat_penalty must be positive (got %g)",
                           (double)p->repeat_penalty);
    if (p->no_repeat_ngram_size < 0)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "no_repeat_ngram_size must be >= 0 (got %d)", p->no_repeat_ngram_size);
    if (!isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "presence/frequency penalties must be finite");
    return RLHF_OK;
}

int sampler_params_is_greedy(const sampler_params *p) { return p->temperature <= 0.0f; }

/* ---- list helpers ---- */

static int token_cmp_desc(const void *a, const void *b) {
    const sampler_token *x = a, *y = b;
    if (x->logit > y->logit) return -1;
    if (x->logit < y->logit) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

void sampler_list_sort(sampler_list *cur) {
    if (cur->sorted) return;
    qsort(cur->data, (size_t)cur->n, sizeof *cur->data, token_cmp_desc);
    cur->sorted = 1;
    cur->identity = 0;
}

static float list_max_logit(const sampler_list *cur) {
    if (cur->sorted) return cur->data[0].logit;
    float m = -INFINITY;
    for (int i = 0; i < cur->n; i++)
        if (cur->data[i].logit > m) m = cur->data[i].logit;
    return m;
}

void sampler_list_softmax(sampler_list *cur) {
    if (cur->n <= 0) return;
    if (cur->has_p) {
        /* the weights are already proportional to exp(logit): renormalising is enough */
        double sum = 0.0;
        for (int i = 0; i < cur->n; i++) sum += cur->data[i].p;
        const float inv = (float)(1.0 / sum);
        for (int i = 0; i < cur->n; i++) cur->data[i].p *= inv;
        return;
    }
    const float m = list_max_logit(cur);
    double sum = 0.0;
    for (int i = 0; i < cur->n; i++) {
        float e = expf(cur->data[i].logit - m);
        cur->data[i].p = e;
        sum += e;
    }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < cur->n; i++) cur->data[i].p *= inv;
    cur->has_p = 1;
}

/* Keeps data[0..n_keep) (the caller put the survivors there). */
static void list_truncate(sampler_list *cur, int n_keep) {
    if (n_keep < 1) n_keep = 1; /* never empty: the best candidate always survives */
    if (n_keep < cur->n) {
        cur->n = n_keep;
        cur->identity = 0; /* the survivors' p stay proportional to exp(logit): has_p holds */
    }
}

/* ---- the chain ---- */

int sampler_chain_init(sampler_chain *c, int n_vocab, rlhf_error *err) {
    memset(c, 0, sizeof *c);
    if (n_vocab < 1) return rlhf_errorf(err, RLHF_ERR_INVALID, "sampler: vocabulary size %d", n_vocab);
    c->n_vocab = n_vocab;
    c->list.data = malloc((size_t)n_vocab * sizeof *c->list.data);
    c->counts = calloc((size_t)n_vocab, sizeof *c->counts);
    if (!c->list.data || !c->counts) {
        sampler_chain_free(c);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "sampler: out of memory for %d candidates", n_vocab);
    }
    return RLHF_OK;
}

void sampler_chain_free(sampler_chain *c) {
    for (int i = 0; i < c->n_samplers; i++)
        if (c->samplers[i].iface && c->samplers[i].iface->free) c->samplers[i].iface->free(&c->samplers[i]);
    free(c->list.data);
    free(c->counts);
    memset(c, 0, sizeof *c);
}

int sampler_chain_add(sampler_chain *c, const sampler_iface *iface, void *state, rlhf_error *err) {
    if (c->n_samplers >= SAMPLER_CHAIN_MAX)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "sampler chain is full (%d samplers)", SAMPLER_CHAIN_MAX);
    c->samplers[c->n_samplers].iface = iface;
    c->samplers[c->n_samplers].state = state;
    c->n_samplers++;
    return RLHF_OK;
}

static void state_free(sampler *s) {
    free(s->state);
    s->state = NULL;
}

/* Adds a built-in whose state is a small malloc'd copy of `params`. */
static int chain_add_copy(sampler_chain *c, const sampler_iface *iface, const void *params, size_t size,
                          rlhf_error *err) {
    void *st = malloc(size);
    if (!st) return rlhf_errorf(err, RLHF_ERR_NOMEM, "sampler: out of memory");
    memcpy(st, params, size);
    int rc = sampler_chain_add(c, iface, st, err);
    if (rc) free(st);
    return rc;
}

/* ---- penalties ---- */

typedef struct {
    float repeat, presence, frequency;
    int last_n;
    int32_t *counts; /* the chain's (V) scratch, zero between calls; borrowed */
    int n_vocab;
} penalties_state;

static void penalize(sampler_token *t, const penalties_state *st, int count) {
    if (st->repeat != 1.0f) t->logit = t->logit > 0.0f ? t->logit / st->repeat : t->logit * st->repeat;
    t->logit -= (float)count * st->frequency + (count > 0 ? st->presence : 0.0f);
}

static void penalties_apply(sampler *s, sampler_list *cur, const sampler_context *ctx) {
    penalties_state *st = s->state;
    if (!ctx || !ctx->history || ctx->n_history <= 0) return;
    int start = 0;
    if (st->last_n >= 0 && ctx->n_history > st->last_n) start = ctx->n_history - st->last_n;
    const int32_t *h = ctx->history;
    int32_t *counts = st->counts;
    for (int i = start; i < ctx->n_history; i++)
        if (h[i] >= 0 && h[i] < st->n_vocab) counts[h[i]]++;
    if (cur->identity) {
        /* Touch only the seen tokens; zeroing a count marks its token done. */
        for (int i = start; i < ctx->n_history; i++) {
            int32_t id = h[i];
            if (id < 0 || id >= st->n_vocab || counts[id] == 0) continue;
            penalize(&cur->data[id], st, counts[id]);
            counts[id] = 0;
        }
    } else {
        for (int i = 0; i < cur->n; i++) {
            int cnt = counts[cur->data[i].id];
            if (cnt > 0) penalize(&cur->data[i], st, cnt);
        }
        for (int i = start; i < ctx->n_history; i++)
            if (h[i] >= 0 && h[i] < st->n_vocab) counts[h[i]] = 0;
    }
    cur->sorted = 0;
    cur->has_p = 0;
}

static const sampler_iface penalties_iface = {"penalties", penalties_apply, state_free};

int sampler_chain_add_penalties(sampler_chain *c, float repeat, float presence, float frequency, int last_n,
                                rlhf_error *err) {
    if (!(repeat > 0.0f)) return rlhf_errorf(err, RLHF_ERR_INVALID, "repeat_penalty must be positive");
    penalties_state st = {repeat, presence, frequency, last_n, c->counts, c->n_vocab};
    return chain_add_copy(c, &penalties_iface, &st, sizeof st, err);
}

/* ---- no repeat ngram ---- */

int sampler_ngram_banned(const int32_t *h, int n, int size, int32_t *banned, int max_banned) {
    if (size <= 0 || n + 1 < size) return 0;
    int nb = 0;
    const int32_t *tail = h + n - (size - 1); /* the last size-1 tokens */
    for (int i = 0; i + size <= n && nb < max_banned; i++)
        if (memcmp(h + i, tail, (size_t)(size - 1) * sizeof *h) == 0) banned[nb++] = h[i + size - 1];
    return nb;
}

static void no_repeat_apply(sampler *s, sampler_list *cur, const sampler_context *ctx) {
    const int size = *(const int *)s->state;
    if (!ctx || !ctx->history) return;
    const int32_t *h = ctx->history;
    const int n = ctx->n_history;
    if (size <= 0 || n + 1 < size) return;
    const int32_t *tail = h + n - (size - 1);
    for (int i = 0; i + size <= n; i++) {
        if (memcmp(h + i, tail, (size_t)(size - 1) * sizeof *h) != 0) continue;
        int32_t id = h[i + size - 1];
        if (cur->identity) {
            if (id >= 0 && id < cur->n) cur->data[id].logit = -INFINITY;
        } else {
            for (int j = 0; j < cur->n; j++)
                if (cur->data[j].id == id) cur->data[j].logit = -INFINITY;
        }
    }
    cur->sorted = 0;
    cur->has_p = 0;
}

static const sampler_iface no_repeat_iface = {"no_repeat_ngram", no_repeat_apply, state_free};

int sampler_chain_add_no_repeat_ngram(sampler_chain *c, int n, rlhf_error *err) {
    return chain_add_copy(c, &no_repeat_iface, &n, sizeof n, err);
}

/* ---- temperature ---- */

static void temperature_apply(sampler *s, sampler_list *cur, const sampler_context *ctx) {
    (void)ctx;
    const float t = *(const float *)s->state;
    if (t <= 0.0f) {
        /* Zero temperature is the limit of sharpening: only the best candidate survives. */
        int best = 0;
        for (int i = 1; i < cur->n; i++)
            if (token_cmp_desc(&cur->data[i], &cur->data[best]) < 0) best = i;
        sampler_token keep = cur->data[best];
        cur->data[0] = keep;
        if (best != 0) cur->identity = 0;
        list_truncate(cur, 1);
        cur->sorted = 1;
        return;
    }
    if (t == 1.0f) return;
    for (int i = 0; i < cur->n; i++) cur->data[i].logit /= t;
    cur->has_p = 0;
}

static const sampler_iface temperature_iface = {"temperature", temperature_apply, state_free};

int sampler_chain_add_temperature(sampler_chain *c, float t, rlhf_error *err) {
    return chain_add_copy(c, &temperature_iface, &t, sizeof t, err);
}

/* ---- top-k ---- */

static void token_swap(sampler_token *a, sampler_token *b) {
    sampler_token t = *a;
    *a = *b;
    *b = t;
}

/* Rearranges d[0..n) so that d[k] holds the element a full descending sort would put there,
 * with everything before it ordered before it (Numerical Recipes' select; deterministic, and
 * the order is total because ids are unique). */
static void select_kth(sampler_token *a, int n, int k) {
#define BEFORE(x, y) (token_cmp_desc(&(x), &(y)) < 0)
    int l = 0, ir = n - 1;
    for (;;) {
        if (ir <= l + 1) {
            if (ir == l + 1 && BEFORE(a[ir], a[l])) token_swap(&a[l], &a[ir]);
            return;
        }
        int mid = (l + ir) >> 1;
        token_swap(&a[mid], &a[l + 1]);
        if (BEFORE(a[ir], a[l])) token_swap(&a[l], &a[ir]);
        if (BEFORE(a[ir], a[l + 1])) token_swap(&a[l + 1], &a[ir]);
        if (BEFORE(a[l + 1], a[l])) token_swap(&a[l], &a[l + 1]);
        int i = l + 1, j = ir;
        sampler_token pivot = a[l + 1];
        for (;;) {
            do i++; while (BEFORE(a[i], pivot));
            do j--; while (BEFORE(pivot, a[j]));
            if (j < i) break;
            token_swap(&a[i], &a[j]);
        }
        a[l + 1] = a[j];
        a[j] = pivot;
        if (j >= k) ir = j - 1;
        if (j <= k) l = i;
    }
#undef BEFORE
}

static void top_k_apply(sampler *s, sampler_list *cur, const sampler_context *ctx) {
    (void)ctx;
    const int k = *(const int *)s->state;
    if (k <= 0 || k >= cur->n) return;
    if (cur->sorted) {
        /* HF keeps every token tied with the k-th largest logit. */
        int n_keep = k;
        while (n_keep < cur->n && cur->data[n_keep].logit >= cur->data[k - 1].logit) n_keep++;
        list_truncate(cur, n_keep);
        return;
    }
    select_kth(cur->data, cur->n, k - 1);
    const float thr = cur->data[k - 1].logit;
    int n_keep = k;
    for (int i = k; i < cur->n; i++)
        if (cur->data[i].logit >= thr) token_swap(&cur->data[n_keep++], &cur->data[i]);
    list_truncate(cur, n_keep);
    /* The survivors are few: sorting them gives later samplers (top-p) an ordered list. */
    sampler_list_sort(cur);
}

static const sampler_iface top_k_iface = {"top_k", top_k_apply, state_free};

int sampler_chain_add_top_k(sampler_chain *c, int k, rlhf_error *err) {
    return chain_add_copy(c, &top_k_iface, &k, sizeof k, err);
}

/* ---- top-p ---- */

/* The nucleus of an unsorted list: the shortest run of its best tokens (in the total order)
 * whose probabilities sum to >= target, moved to the front; returns its length. Instead of
 * sorting V tokens, tokens are binned by logit over the list's range (bins respect the order:
 * a higher logit never lands in a later bin), the bin where the mass crosses the target is
 * found from the per-bin masses, and only that bin is sorted. Three passes and a small sort,
 * which matters for flat distributions whose nucleus is most of the vocabulary. */
#define NUCLEUS_BINS 1024

static inline int nucleus_bin(float m, float scale, float logit) {
    const float x = (m - logit) * scale;
    return x < (float)(NUCLEUS_BINS - 1) ? (int)x : NUCLEUS_BINS - 1; /* inf, NaN: last bin */
}

static int nucleus_binned(sampler_list *cur, double target) {
    sampler_token *a = cur->data;
    const int n = cur->n;
    float m = -INFINITY, lo = INFINITY;
    for (int i = 0; i < n; i++) {
        const float l = a[i].logit;
        if (l > m) m = l;
        if (l < lo && isfinite(l)) lo = l;
    }
    const float scale = m > lo ? (float)(NUCLEUS_BINS - 1) / (m - lo) : 0.0f;
    double mass[NUCLEUS_BINS] = {0};
    for (int i = 0; i < n; i++) mass[nucleus_bin(m, scale, a[i].logit)] += a[i].p;
    double cum = 0.0;
    int B = NUCLEUS_BINS - 1;
    for (int b = 0; b < NUCLEUS_BINS; b++) {
        if (cum + mass[b] >= target) {
            B = b;
            break;
        }
        cum += mass[b];
    }
    int f = 0;
    for (int i = 0; i < n; i++)
        if (nucleus_bin(m, scale, a[i].logit) < B) token_swap(&a[f++], &a[i]);
    int g = f;
    for (int i = f; i < n; i++)
        if (nucleus_bin(m, scale, a[i].logit) == B) token_swap(&a[g++], &a[i]);
    qsort(a + f, (size_t)(g - f), sizeof *a, token_cmp_desc);
    for (int j = f; j < g; j++) {
        cum += a[j].p;
        if (cum >= target) return j + 1;
    }
    return g > 0 ? g : 1;
}

static void top_p_apply(sampler *s, sampler_list *cur, const sampler_context *ctx) {
    (void)ctx;
    const float p = *(const float *)s->state;
    if (p >= 1.0f || cur->n <= 1) return;
    sampler_list_softmax(cur);
    int n_keep = cur->n;
    if (cur->sorted) {
        double cum = 0.0;
        for (int i = 0; i < cur->n; i++) {
            cum += cur->data[i].p;
            if (cum >= (double)p) {
                n_keep = i + 1;
                break;
            }
        }
    } else {
        n_keep = nucleus_binned(cur, (double)p);
        cur->identity = 0;
    }
    list_truncate(cur, n_keep);
}

static const sampler_iface top_p_iface = {"top_p", top_p_apply, state_free};

int sampler_chain_add_top_p(sampler_chain *c, float p, rlhf_error *err) {
    return chain_add_copy(c, &top_p_iface, &p, sizeof p, err);
}

/* ---- min-p ---- */

static void min_p_apply(sampler *s, sampler_list *cur, const sampler_context *ctx) {
    (void)ctx;
    const float q = *(const float *)s->state;
    if (q <= 0.0f || cur->n <= 1) return;
    const float m = list_max_logit(cur);
    /* p_i >= q * p_max  <=>  exp(l_i - max) >= q: no normalisation needed. */
    int n_keep = 0;
    for (int i = 0; i < cur->n; i++)
        if (expf(cur->data[i].logit - m) >= q) cur->data[n_keep++] = cur->data[i];
    /* Compacting in order keeps a sorted list sorted. */
    list_truncate(cur, n_keep);
}

static const sampler_iface min_p_iface = {"min_p", min_p_apply, state_free};

int sampler_chain_add_min_p(sampler_chain *c, float p, rlhf_error *err) {
    return chain_add_copy(c, &min_p_iface, &p, sizeof p, err);
}

/* ---- final selection ---- */

static void greedy_apply(sampler *s, sampler_list *cur, const sampler_context *ctx) {
    (void)s;
    (void)ctx;
    int best = 0;
    for (int i = 1; i < cur->n; i++)
        if (token_cmp_desc(&cur->data[i], &cur->data[best]) < 0) best = i;
    cur->selected = cur->data[best].id;
}

static const sampler_iface greedy_iface = {"greedy", greedy_apply, NULL};

int sampler_chain_add_greedy(sampler_chain *c, rlhf_error *err) {
    return sampler_chain_add(c, &greedy_iface, NULL, err);
}

static void dist_apply(sampler *s, sampler_list *cur, const sampler_context *ctx) {
    (void)s;
    if (!ctx || !ctx->rng || cur->n == 1) {
        greedy_apply(s, cur, ctx);
        return;
    }
    double sum = 0.0;
    if (cur->has_p) {
        /* a filter's softmax already gave weights proportional to exp(logit) */
        for (int i = 0; i < cur->n; i++) sum += cur->data[i].p;
    } else {
        const float m = list_max_logit(cur);
        for (int i = 0; i < cur->n; i++) {
            cur->data[i].p = expf(cur->data[i].logit - m);
            sum += cur->data[i].p;
        }
    }
    const double u = rng_double(ctx->rng) * sum;
    double cum = 0.0;
    int pick = cur->n - 1;
    for (int i = 0; i < cur->n; i++) {
        cum += cur->data[i].p;
        if (u < cum) {
            pick = i;
            break;
        }
    }
    /* Rounding can leave u just above the last cumulative sum: take the last candidate with
     * non-zero weight rather than a zero-probability one. */
    while (pick > 0 && cur->data[pick].p == 0.0f) pick--;
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < cur->n; i++) cur->data[i].p *= inv;
    cur->has_p = 1;
    cur->selected = cur->data[pick].id;
}

static const sampler_iface dist_iface = {"dist", dist_apply, NULL};

int sampler_chain_add_dist(sampler_chain *c, rlhf_error *err) {
    return sampler_chain_add(c, &dist_iface, NULL, err);
}

/* ---- standard chain ---- */

int sampler_chain_init_params(sampler_chain *c, int n_vocab, const sampler_params *p, rlhf_error *err) {
    int rc = sampler_params_validate(p, err);
    if (rc) return rc;
    rc = sampler_chain_init(c, n_vocab, err);
    if (rc) return rc;
    if (p->repeat_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f)
        rc = sampler_chain_add_penalties(c, p->repeat_penalty, p->presence_penalty, p->frequency_penalty,
                                         p->penalty_last_n, err);
    if (rc) goto fail;
    if (p->no_repeat_ngram_size > 0 && (rc = sampler_chain_add_no_repeat_ngram(c, p->no_repeat_ngram_size, err)))
        goto fail;
    if (p->temperature <= 0.0f) {
        rc = sampler_chain_add_greedy(c, err);
        if (rc) goto fail;
        return RLHF_OK;
    }
    if (p->temperature != 1.0f && (rc = sampler_chain_add_temperature(c, p->temperature, err))) goto fail;
    if (p->top_k > 0 && (rc = sampler_chain_add_top_k(c, p->top_k, err))) goto fail;
    if (p->top_p < 1.0f && (rc = sampler_chain_add_top_p(c, p->top_p, err))) goto fail;
    if (p->min_p > 0.0f && (rc = sampler_chain_add_min_p(c, p->min_p, err))) goto fail;
    if ((rc = sampler_chain_add_dist(c, err))) goto fail;
    return RLHF_OK;
fail:
    sampler_chain_free(c);
    return rc;
}

int32_t sampler_chain_sample(sampler_chain *c, const float *logits, const sampler_context *ctx) {
    sampler_list *cur = &c->list;
    if (c->n_samplers == 1 && c->samplers[0].iface == &greedy_iface) {
        /* plain greedy: an argmax over the logits, without building the V-entry list */
        const int32_t id = sampler_argmax(logits, c->n_vocab);
        cur->data[0] = (sampler_token){id, logits[id], 1.0f};
        cur->n = 1;
        cur->identity = c->n_vocab == 1;
        cur->sorted = 1;
        cur->has_p = 1;
        cur->selected = id;
        return id;
    }
    for (int i = 0; i < c->n_vocab; i++) {
        cur->data[i].id = i;
        cur->data[i].logit = logits[i];
        cur->data[i].p = 0.0f;
    }
    cur->n = c->n_vocab;
    cur->identity = 1;
    cur->sorted = 0;
    cur->has_p = 0;
    cur->selected = -1;
    for (int i = 0; i < c->n_samplers; i++) c->samplers[i].iface->apply(&c->samplers[i], cur, ctx);
    if (cur->selected < 0) cur->selected = cur->data[0].id;
    return cur->selected;
}

float sampler_logprob(const float *logits, int n_vocab, int32_t id) {
    float m = -INFINITY;
    for (int i = 0; i < n_vocab; i++)
        if (logits[i] > m) m = logits[i];
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - (double)m);
    return (float)((double)logits[id] - (double)m - log(sum));
}

int32_t sampler_argmax(const float *logits, int n_vocab) {
    int32_t best = 0;
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}
