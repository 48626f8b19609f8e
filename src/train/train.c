/* train.c — one training step (micro-batches, head, backward, clipped AdamW) and the
 * training-state file that makes resuming exact. */
#include "src/train/train.h"

#include <assert.h>

#include <cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/fileio.h"
#include "src/model/lora.h"

void train_params_defaults(train_params *p) {
    memset(p, 0, sizeof *p);
    p->batch = 8;
    p->context = 128;
    p->accum = 1;
    optim_params_defaults(&p->optim);
}

int train_init(train *t, model *m, const train_params *p, rlhf_error *err) {
    memset(t, 0, sizeof *t);
    if (p->batch < 1) return rlhf_errorf(err, RLHF_ERR_INVALID, "batch size must be >= 1 (got %d)", p->batch);
    if (p->context < 1 || p->context > m->config.context)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "context %d must be in 1..%d (the model's context)", p->context,
                           m->config.context);
    if (p->accum < 1) return rlhf_errorf(err, RLHF_ERR_INVALID, "gradient accumulation must be >= 1 (got %d)", p->accum);
    int rc = model_alloc_grads(m, err);
    if (rc) return rc;
    t->model = m;
    t->B = p->batch;
    t->T = p->context;
    t->accum = p->accum;
    t->params = m->params;
    t->grads = m->grads;
    t->n_floats = m->n_floats;
    rc = model_acts_init(&t->acts, &m->config, p->batch, p->context, err);
    if (rc) goto fail;
    rc = optim_init_frozen(&t->opt, &p->optim, m->tensors, m->n_tensors, m->n_floats, p->frozen, err);
    if (rc) goto fail;
    return RLHF_OK;
fail:
    train_free(t);
    return rc;
}

int train_init_lora(train *t, model *m, lora *lo, const train_params *p, rlhf_error *err) {
    memset(t, 0, sizeof *t);
    assert(m->lora == lo && m->frozen);
    if (p->batch < 1) return rlhf_errorf(err, RLHF_ERR_INVALID, "batch size must be >= 1 (got %d)", p->batch);
    if (p->context < 1 || p->context > m->config.context)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "context %d must be in 1..%d (the model's context)", p->context,
                           m->config.context);
    if (p->accum < 1) return rlhf_errorf(err, RLHF_ERR_INVALID, "gradient accumulation must be >= 1 (got %d)", p->accum);
    t->model = m;
    t->B = p->batch;
    t->T = p->context;
    t->accum = p->accum;
    t->params = lo->params;
    t->grads = lo->grads;
    t->n_floats = lo->n_floats;
    int rc = model_acts_init(&t->acts, &m->config, p->batch, p->context, err);
    if (rc) goto fail;
    rc = optim_init(&t->opt, &p->optim, lo->tensors, lo->n_tensors, lo->n_floats, err);
    if (rc) goto fail;
    return RLHF_OK;
fail:
    train_free(t);
    return rc;
}

void train_zero_grads(train *t) {
    if (t->grads) memset(t->grads, 0, t->n_floats * sizeof(float));
}

void train_free(train *t) {
    model_acts_free(&t->acts);
    optim_free(&t->opt);
    memset(t, 0, sizeof *t);
}

int train_step(train *t, const int32_t *inputs, const int32_t *targets, train_step_result *res,
               rlhf_error *err) {
    model *m = t->model;
    const int B = t->B, T = t->T, V = m->config.vocab_size;
    const size_t bt = (size_t)B * (size_t)T;
    double loss_sum = 0.0;
    train_zero_grads(t);
    for (int k = 0; k < t->accum; k++) {
        int rc = model_forward(m, &t->acts, inputs + (size_t)k * bt, B, T, err);
        if (rc) return rc;
        /* The head turns logits into d(loss)/d(logits) in place: no second (B, T, V) buffer. */
        double loss = model_xent(t->acts.logits, targets + (size_t)k * bt, NULL, B, T, V, t->acts.logits, NULL);
        if (!isfinite(loss))
            return rlhf_errorf(err, RLHF_ERR_NUMERIC, "step %ld: loss is %g (micro-batch %d)", t->opt.step + 1, loss, k);
        loss_sum += loss;
        rc = model_backward(m, &t->acts, t->acts.logits, NULL, err);
        if (rc) return rlhf_error_prefix(err, "step %ld: ", t->opt.step + 1);
    }
    optim_stats st;
    int rc = optim_step(&t->opt, t->params, t->grads, 1.0f / (float)t->accum, &st, err);
    if (rc) return rc;
    if (res) {
        res->loss = loss_sum / t->accum;
        res->opt = st;
    }
    return RLHF_OK;
}

int train_eval(train *t, const int32_t *inputs, const int32_t *targets, int n_batches, double *loss,
               rlhf_error *err) {
    model *m = t->model;
    const int B = t->B, T = t->T, V = m->config.vocab_size;
    const size_t bt = (size_t)B * (size_t)T;
    double sum = 0.0;
    for (int k = 0; k < n_batches; k++) {
        int rc = model_forward(m, &t->acts, inputs + (size_t)k * bt, B, T, err);
        if (rc) return rc;
        sum += model_xent(t->acts.logits, targets + (size_t)k * bt, NULL, B, T, V, NULL, NULL);
    }
    *loss = n_batches > 0 ? sum / n_batches : NAN;
    return RLHF_OK;
}

uint64_t train_hash(const void *data, size_t bytes) {
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
    }
    for (; i < bytes; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* ---- training-state file ---- */

#define STATE_MAGIC "RLHFTRN1"
#define STATE_END "RLHFEND1"
#define STATE_PARAMS "RLHFPARM"
#define STATE_EXTRA "RLHFXTRA"

static cJSON *hex_u64(uint64_t x) {
    char buf[24];
    snprintf(buf, sizeof buf, "%016" PRIx64, x);
    return cJSON_CreateString(buf);
}

static int parse_hex_u64(const cJSON *item, uint64_t *out) {
    const char *s = cJSON_GetStringValue(item);
    if (!s || strlen(s) != 16) return -1;
    char *end;
    *out = strtoull(s, &end, 16);
    return *end ? -1 : 0;
}

int train_state_save(const char *path, const train *t, const train_state_info *info, rlhf_error *err) {
    return train_state_save_extra(path, t, info, NULL, 0, err);
}

int train_state_save_extra(const char *path, const train *t, const train_state_info *info, const void *extra, size_t n,
                           rlhf_error *err) {
    cJSON *root = cJSON_CreateObject();
    cJSON *rng = cJSON_CreateArray();
    char *json = NULL;
    int rc = RLHF_OK;
    file_atomic fa = {0};
    if (!root || !rng) goto nomem;
    cJSON_AddItemToObject(root, "format", cJSON_CreateString("rlhf.c training state"));
    cJSON_AddItemToObject(root, "step", cJSON_CreateNumber((double)info->step));
    for (int i = 0; i < 4; i++) cJSON_AddItemToArray(rng, hex_u64(info->rng.s[i]));
    cJSON_AddItemToObject(root, "rng", rng);
    rng = NULL;
    cJSON_AddItemToObject(root, "data_hash", hex_u64(info->data_hash));
    cJSON_AddItemToObject(root, "params_hash", hex_u64(train_hash(t->params, t->n_floats * sizeof(float))));
    cJSON *run = cJSON_Parse(info->run_json ? info->run_json : "{}");
    if (!run) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s: the run configuration is not valid JSON", path);
        goto done;
    }
    cJSON_AddItemToObject(root, "run", run);
    json = cJSON_PrintUnformatted(root);
    if (!json) goto nomem;
    rc = file_atomic_open(&fa, path, err);
    if (rc) goto done;
    uint64_t len = strlen(json);
    if (fwrite(STATE_MAGIC, 1, 8, fa.fp) != 8 || fwrite(&len, 8, 1, fa.fp) != 1 ||
        fwrite(json, 1, (size_t)len, fa.fp) != (size_t)len) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: write failed", path);
        goto done;
    }
    uint64_t np = t->n_floats;
    if (fwrite(STATE_PARAMS, 1, 8, fa.fp) != 8 || fwrite(&np, 8, 1, fa.fp) != 1 ||
        fwrite(t->params, sizeof(float), t->n_floats, fa.fp) != t->n_floats) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: writing the parameters failed", path);
        goto done;
    }
    rc = optim_write(&t->opt, fa.fp, path, err);
    if (rc) goto done;
    uint64_t nx = n;
    if (n && (fwrite(STATE_EXTRA, 1, 8, fa.fp) != 8 || fwrite(&nx, 8, 1, fa.fp) != 1 || fwrite(extra, 1, n, fa.fp) != n)) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: writing the trainer's state failed", path);
        goto done;
    }
    if (fwrite(STATE_END, 1, 8, fa.fp) != 8) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: write failed", path);
        goto done;
    }
    rc = file_atomic_commit(&fa, err);
    goto done;
nomem:
    rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", path);
done:
    file_atomic_abort(&fa);
    cJSON_Delete(rng);
    cJSON_Delete(root);
    free(json);
    return rc;
}

/* Reads magic and JSON header; on success fp is positioned at the optimizer block. */
static int state_read_header(FILE *fp, const char *path, train_state_info *info, rlhf_error *err) {
    char *json = NULL;
    cJSON *root = NULL;
    int rc = RLHF_OK;
    char magic[8];
    uint64_t len;
    if (fread(magic, 1, 8, fp) != 8 || memcmp(magic, STATE_MAGIC, 8) != 0) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: not an rlhf.c training state (bad magic)", path);
        goto done;
    }
    if (fread(&len, 8, 1, fp) != 1 || len > (1u << 26)) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: training state header is truncated or corrupt", path);
        goto done;
    }
    json = malloc((size_t)len + 1);
    if (!json) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (fread(json, 1, (size_t)len, fp) != (size_t)len) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: training state header is truncated", path);
        goto done;
    }
    json[len] = '\0';
    root = cJSON_Parse(json);
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(root, "step");
    const cJSON *rng = cJSON_GetObjectItemCaseSensitive(root, "rng");
    const cJSON *run = cJSON_GetObjectItemCaseSensitive(root, "run");
    if (!root || !cJSON_IsNumber(step) || step->valuedouble < 0 || cJSON_GetArraySize(rng) != 4 ||
        parse_hex_u64(cJSON_GetObjectItemCaseSensitive(root, "data_hash"), &info->data_hash) ||
        parse_hex_u64(cJSON_GetObjectItemCaseSensitive(root, "params_hash"), &info->params_hash) ||
        !cJSON_IsObject(run)) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: training state header is missing step, rng, hashes or run", path);
        goto done;
    }
    info->step = (long)step->valuedouble;
    for (int i = 0; i < 4; i++) {
        if (parse_hex_u64(cJSON_GetArrayItem(rng, i), &info->rng.s[i])) {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: rng state entry %d is not a 16-digit hex number", path, i);
            goto done;
        }
    }
    info->run_json = cJSON_PrintUnformatted(run);
    if (!info->run_json) rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", path);
done:
    cJSON_Delete(root);
    free(json);
    return rc;
}

int train_state_read_info(const char *path, train_state_info *info, rlhf_error *err) {
    memset(info, 0, sizeof *info);
    FILE *fp = fopen(path, "rb");
    if (!fp) return rlhf_errorf(err, RLHF_ERR_IO, "%s: cannot open the training state", path);
    int rc = state_read_header(fp, path, info, err);
    fclose(fp);
    if (rc) {
        free(info->run_json);
        info->run_json = NULL;
    }
    return rc;
}

int train_state_load(const char *path, train *t, train_state_info *info, rlhf_error *err) {
    void *extra = NULL;
    size_t n = 0;
    int rc = train_state_load_extra(path, t, info, &extra, &n, err);
    free(extra);
    return rc;
}

int train_state_load_extra(const char *path, train *t, train_state_info *info, void **extra, size_t *n, rlhf_error *err) {
    *extra = NULL;
    *n = 0;
    memset(info, 0, sizeof *info);
    FILE *fp = fopen(path, "rb");
    if (!fp) return rlhf_errorf(err, RLHF_ERR_IO, "%s: cannot open the training state", path);
    char magic[8];
    uint64_t np;
    int rc = state_read_header(fp, path, info, err);
    if (rc) goto done;
    if (fread(magic, 1, 8, fp) != 8 || memcmp(magic, STATE_PARAMS, 8) != 0 || fread(&np, 8, 1, fp) != 1) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: parameter block is missing or truncated", path);
        goto done;
    }
    if (np != (uint64_t)t->n_floats) {
        rc = rlhf_errorf(err, RLHF_ERR_SHAPE, "%s: holds %llu parameter floats but the %s needs %zu", path,
                         (unsigned long long)np, t->params == t->model->params ? "model" : "adapter", t->n_floats);
        goto done;
    }
    if (fread(t->params, sizeof(float), t->n_floats, fp) != t->n_floats) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: parameter block is truncated", path);
        goto done;
    }
    if (train_hash(t->params, t->n_floats * sizeof(float)) != info->params_hash) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: the parameters do not match their recorded hash (corrupt file)", path);
        goto done;
    }
    rc = optim_read(&t->opt, fp, path, err);
    if (rc) goto done;
    if (t->opt.step != info->step) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: header says step %ld but the optimizer block says %ld", path,
                         info->step, t->opt.step);
        goto done;
    }
    if (fread(magic, 1, 8, fp) != 8) memset(magic, 0, 8);
    if (memcmp(magic, STATE_EXTRA, 8) == 0) {
        uint64_t nx;
        if (fread(&nx, 8, 1, fp) != 1 || nx > (1ull << 40) || !(*extra = malloc(nx ? (size_t)nx : 1)) ||
            fread(*extra, 1, (size_t)nx, fp) != (size_t)nx) {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: the trainer's state block is truncated", path);
            goto done;
        }
        *n = (size_t)nx;
        if (fread(magic, 1, 8, fp) != 8) memset(magic, 0, 8);
    }
    if (memcmp(magic, STATE_END, 8) != 0 || fgetc(fp) != EOF)
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: training state is truncated or has trailing bytes", path);
done:
    if (rc) {
        free(info->run_json);
        info->run_json = NULL;
        free(*extra);
        *extra = NULL;
        *n = 0;
    }
    fclose(fp);
    return rc;
}
