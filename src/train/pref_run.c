/* pref_run.c — the pieces the offline preference runs share (see pref_run.h). */
#include "src/train/pref_run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/fileio.h"
#include "src/core/rng.h"

int pref_policy_load(model_bundle *b, const char *dir, const char *what, int32_t *eos, rlhf_error *err) {
    int rc = model_bundle_load(b, dir, err);
    if (rc) return rc;
    if (!b->tok)
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s: the model has no tokenizer (%s reads text)", dir, what);
    else if (tok_vocab_size(b->tok) > b->m.config.vocab_size)
        rc = rlhf_errorf(err, RLHF_ERR_SHAPE, "%s: the tokenizer has %d ids but the model's vocabulary is %d", dir,
                         tok_vocab_size(b->tok), b->m.config.vocab_size);
    if (!rc) {
        *eos = tok_eos_id(b->tok);
        if (*eos < 0 && b->defaults.n_eos > 0) *eos = b->defaults.eos_ids[0];
        if (*eos < 0) rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s: the tokenizer has no EOS token (replies end with EOS)", dir);
    }
    if (rc) model_bundle_free(b);
    return rc;
}

int pref_reference(model *ref, const model **out, const char *ref_dir, const model *policy, rlhf_error *err) {
    *out = policy;
    if (!ref_dir) return RLHF_OK;
    int rc = model_load_weights(ref, ref_dir, err);
    if (rc) return rc;
    if (ref->config.vocab_size != policy->config.vocab_size) {
        rc = rlhf_errorf(err, RLHF_ERR_SHAPE, "%s: the reference's vocabulary (%d) is not the policy's (%d)", ref_dir,
                         ref->config.vocab_size, policy->config.vocab_size);
        model_free(ref);
        return rc;
    }
    *out = ref;
    return RLHF_OK;
}

/* ---- the reference cache: "REF1" (u32), key (u64), count (u64), count doubles; host byte
 * order (the cache belongs to the machine that wrote it) ---- */

#define REF_CACHE_MAGIC 0x52454631u

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

uint64_t pref_ref_cache_key(const model *ref, const uint64_t *data_hashes, int n) {
    uint64_t key = fnv(1469598103934665603ull, ref->params, ref->n_floats * sizeof(float));
    for (int i = 0; i < n; i++) key = fnv(key, &data_hashes[i], sizeof data_hashes[i]);
    return key;
}

static char *cache_path(const char *out_dir) {
    size_t n = strlen(out_dir) + sizeof "/ref_logps.bin";
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/ref_logps.bin", out_dir);
    return s;
}

int pref_ref_cache_read(const char *out_dir, uint64_t key, size_t n, double *out) {
    char *path = cache_path(out_dir), *buf = NULL;
    size_t len = 0;
    rlhf_error e = {0};
    int ok = path && file_exists(path) && !file_read_all(path, &buf, &len, &e) && len == 20 + n * sizeof(double);
    if (ok) {
        uint32_t magic;
        uint64_t k, cnt;
        memcpy(&magic, buf, 4);
        memcpy(&k, buf + 4, 8);
        memcpy(&cnt, buf + 12, 8);
        ok = magic == REF_CACHE_MAGIC && k == key && cnt == n;
    }
    if (ok) memcpy(out, buf + 20, n * sizeof(double));
    free(buf);
    free(path);
    return ok;
}

int pref_ref_cache_write(const char *out_dir, uint64_t key, size_t n, const double *v, rlhf_error *err) {
    int rc = file_mkdir_p(out_dir, err);
    if (rc) return rc;
    const size_t len = 20 + n * sizeof(double);
    char *path = cache_path(out_dir), *buf = malloc(len);
    if (!path || !buf) rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the reference cache");
    if (!rc) {
        const uint32_t magic = REF_CACHE_MAGIC;
        const uint64_t cnt = n;
        memcpy(buf, &magic, 4);
        memcpy(buf + 4, &key, 8);
        memcpy(buf + 12, &cnt, 8);
        memcpy(buf + 20, v, n * sizeof(double));
        rc = file_write_atomic(path, buf, len, err);
    }
    free(buf);
    free(path);
    return rc;
}

long pref_total_steps(long steps, long epochs, size_t n_train, int batch, int accum) {
    if (steps > 0) return steps;
    const long per_step = (long)batch * (accum < 1 ? 1 : accum);
    const long per_epoch = ((long)n_train + per_step - 1) / per_step;
    return (per_epoch < 1 ? 1 : per_epoch) * (epochs < 1 ? 1 : epochs);
}

/* ---- training ---- */

typedef struct {
    const pref_train_params *p;
    model_bundle *b;
    lora *lo;
} saver;

static int save_model(void *ctx, long step, const rng_t *rng, rlhf_error *err) {
    (void)step;
    (void)rng;
    saver *s = ctx;
    if (s->lo) {
        lora_save_info info = {s->p->model_dir, "CAUSAL_LM"};
        return lora_save(s->lo, s->p->out_dir, &info, NULL, 0, err);
    }
    return model_bundle_save(s->b, s->p->out_dir, err);
}

int pref_train_run(const pref_train_params *p, model_bundle *b, train_head head, train_data data, train_loop_summary *ls,
                   rlhf_error *err) {
    memset(ls, 0, sizeof *ls);
    ls->first_val_loss = ls->final_val_loss = ls->final_loss = NAN;
    train_params tp = p->train;
    tp.optim.total_steps = p->steps;
    lora lo = {0};
    train t = {0};
    int rc = optim_params_validate(&tp.optim, err);
    if (!rc && p->lora.rank > 0) {
        rng_t init;
        rng_seed(&init, p->seed);
        if (!(rc = lora_init(&lo, &b->m, &p->lora, &init, err))) {
            lora_attach(&lo, &b->m);
            rc = train_init_lora(&t, &b->m, &lo, &tp, err);
        }
    } else if (!rc) {
        rc = train_init(&t, &b->m, &tp, err);
    }
    if (!rc) {
        saver sv = {p, b, p->lora.rank > 0 ? &lo : NULL};
        train_loop_params lp;
        memset(&lp, 0, sizeof lp);
        lp.t = &t;
        lp.head = head;
        lp.data = data;
        lp.steps = p->steps;
        lp.eval_every = p->eval_every;
        lp.save_every = p->save_every;
        rng_seed(&lp.rng, p->seed);
        lp.save = save_model;
        lp.save_ctx = &sv;
        lp.stop = p->stop;
        lp.progress = p->progress;
        lp.progress_ctx = p->progress_ctx;
        lp.saved_step = -1;
        rc = train_loop_run(&lp, ls, err);
        if (rc == RLHF_ERR_INTERRUPTED)
            rc = rlhf_errorf(err, RLHF_ERR_INTERRUPTED, "interrupted at step %ld of %ld; the last checkpoint is in %s",
                             ls->steps_done, p->steps, p->out_dir);
    }
    train_free(&t);
    if (b->m.lora) lora_detach(&b->m);
    lora_free(&lo);
    return rc;
}
