/* dpo_run.c — `rlhf dpo`'s run: pairs to rows, the cached reference pass, pair batches, the
 * loop with the DPO head, checkpoints and exact resume (see dpo.h). */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/fileio.h"
#include "src/core/rng.h"
#include "src/formats/model_load.h"
#include "src/train/dpo.h"

void dpo_run_params_defaults(dpo_run_params *p) {
    memset(p, 0, sizeof *p);
    pref_common_params_defaults(&p->c);
    dpo_params_defaults(&p->dpo);
}

/* ---- pairs as SFT texts: prompt + chosen, prompt + rejected ---- */

/* The prompt's messages plus the reply as the last assistant turn; *n_context = the prompt's
 * messages (context only: an earlier assistant turn of the prompt is not part of the reply). */
static char *messages_with_reply(const char *prompt_messages, const char *reply, int *n_context) {
    cJSON *arr = cJSON_Parse(prompt_messages);
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(arr);
        return NULL;
    }
    *n_context = cJSON_GetArraySize(arr);
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "assistant");
    cJSON_AddStringToObject(m, "content", reply);
    cJSON_AddItemToArray(arr, m);
    char *s = cJSON_PrintUnformatted(arr);
    cJSON_Delete(arr);
    return s;
}

static int texts_from_pairs(sft_texts *t, const pref_dataset *d, rlhf_error *err) {
    memset(t, 0, sizeof *t);
    t->items = calloc(2 * d->n, sizeof *t->items);
    if (!t->items) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the pairs");
    t->cap = 2 * d->n;
    for (size_t i = 0; i < d->n; i++)
        for (int side = 0; side < 2; side++) {
            const pref_pair *pp = &d->pairs[i];
            sft_text *x = &t->items[t->n++];
            const char *reply = side ? pp->rejected : pp->chosen;
            if (pp->prompt_messages) {
                x->messages_json = messages_with_reply(pp->prompt_messages, reply, &x->n_context);
                if (!x->messages_json) return rlhf_errorf(err, RLHF_ERR_INVALID, "pair %zu: bad prompt messages", i + 1);
            } else {
                x->prompt = strdup(pp->prompt);
                x->completion = strdup(reply);
                if (!x->prompt || !x->completion) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the pairs");
            }
            x->line = (long)i + 1; /* both sides name their pair; encoding keeps the order */
            x->id = pp->id;
        }
    return RLHF_OK;
}

/* ---- the data source ---- */

typedef struct {
    const sft_encoded *e;
    const size_t *pair_row;  /* (n_pairs) index of the chosen row in e (rejected is next) */
    const double *ref;       /* (e->n) reference log-probability of each row */
    int32_t pad;
} pair_source;

/* Rows of pairs idx[0..n) into b, padded to the longest (positions = ids - 1). */
static void fill_pairs(void *ctx, const size_t *idx, int n, train_batch *b) {
    const pair_source *s = ctx;
    int T = 1;
    for (int k = 0; k < n; k++)
        for (int side = 0; side < 2; side++) {
            int len = s->e->len[s->pair_row[idx[k]] + (size_t)side] - 1;
            if (len > T) T = len;
        }
    b->B = 2 * n;
    b->T = T;
    for (int k = 0; k < n; k++)
        for (int side = 0; side < 2; side++) {
            const size_t ex = s->pair_row[idx[k]] + (size_t)side;
            pref_put_row(b, 2 * k + side, s->e->ids + s->e->start[ex], s->e->loss + s->e->start[ex], s->e->len[ex], s->pad,
                         (float)s->ref[ex]);
        }
}

/* The reference log-probabilities of every pair's rows into ref_lp (by row of e). */
static int reference_logps(const dpo_run_params *p, model *refm, const pair_source *s, size_t n_pairs, const char *fp,
                           double *ref_lp, dpo_summary *sum, rlhf_error *err) {
    const sft_encoded *e = s->e;
    pref_ref_row *rows = calloc(2 * n_pairs, sizeof *rows);
    if (!rows) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the reference cache");
    for (size_t k = 0; k < 2 * n_pairs; k++) {
        const size_t r = s->pair_row[k / 2] + k % 2;
        rows[k] = (pref_ref_row){e->ids + e->start[r], e->loss + e->start[r], e->len[r], 0, 0};
    }
    pref_ref_counts counts;
    int rc = pref_ref_logps(&p->c, refm, fp, sft_encoded_hash(e), rows, 2 * n_pairs, 2,
                            2 * (p->c.train.batch < 1 ? 1 : p->c.train.batch), s->pad, &counts, err);
    for (size_t k = 0; !rc && k < 2 * n_pairs; k++) ref_lp[s->pair_row[k / 2] + k % 2] = rows[k].logp;
    sum->ref_cached = counts.cached;
    sum->ref_computed = counts.computed;
    free(rows);
    return rc;
}

/* ---- the run ---- */

int dpo_run(const dpo_run_params *pin, dpo_summary *sum, rlhf_error *err) {
    dpo_run_params p = *pin;
    pref_common_params *c = &p.c;
    dpo_summary local;
    if (!sum) sum = &local;
    memset(sum, 0, sizeof *sum);
    sum->first_val_loss = sum->final_val_loss = sum->final_loss = NAN;
    model_bundle b = {0}, ref = {0};
    dpo_head h = {0};
    sft_texts texts = {0};
    sft_encoded enc = {0};
    pair_source ps = {0};
    pref_source src = {0};
    pref_state st = {0};
    size_t *pair_row = NULL, *order = NULL;
    double *ref_lp = NULL;
    int rc;
    if (!p.pairs || p.pairs->n == 0) return rlhf_errorf(err, RLHF_ERR_INVALID, "no preference pairs to train on");
    const char *loss_name = dpo_loss_type_name(p.dpo.loss_type);
    pref_setting own_values[] = {{"beta", &p.dpo.beta}, {"label_smoothing", &p.dpo.label_smoothing},
                                 {"rpo_alpha", &p.dpo.rpo_alpha}};
    const pref_own own = {&loss_name, own_values, 3};
    if ((rc = pref_state_open(&st, c, &own, err))) goto done;
    if ((rc = dpo_loss_type_parse(loss_name, &p.dpo.loss_type, err))) goto done;
    if ((rc = dpo_params_validate(&p.dpo, err))) goto done;
    sum->dpo = p.dpo;
    if (c->train.batch < 1 || c->train.batch > 512) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "--batch must be 1..512 pairs (got %d)", c->train.batch);
        goto done;
    }

    /* the starting policy, also on resume: it is the reference (or its base), and the trained
     * numbers come from the training state */
    int32_t eos;
    if ((rc = pref_policy_load(&b, c->model_dir, "DPO", &eos, err))) goto done;
    if (c->max_length <= 0 || c->max_length > b.m.config.context) c->max_length = b.m.config.context;

    /* ---- rows ---- */
    if ((rc = texts_from_pairs(&texts, p.pairs, err))) goto done;
    sft_encoder ec = {b.tok, b.chat_template, b.bos_token, b.eos_token, b.add_bos, eos, c->max_length, c->truncate};
    if ((rc = sft_encode(&enc, &texts, &ec, c->data_desc ? c->data_desc : "pairs", err))) goto done;
    const uint64_t data_hash = sft_encoded_hash(&enc);
    pair_row = malloc((enc.n + 1) * sizeof *pair_row);
    if (!pair_row) goto nomem;
    size_t n_pairs = 0;
    for (size_t k = 0; k + 1 < enc.n;) {
        if (enc.line[k] == enc.line[k + 1]) {
            pair_row[n_pairs++] = k;
            k += 2;
        } else {
            k++;
        }
    }
    sum->n_pairs = n_pairs;
    sum->n_dropped = p.pairs->n - n_pairs;
    if (n_pairs == 0) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "no pair keeps both replies within %d tokens (%zu dropped)", c->max_length,
                         sum->n_dropped);
        goto done;
    }
    /* split: a seeded shuffle, the last val_fraction held out */
    if (!(order = malloc(n_pairs * sizeof *order))) goto nomem;
    const size_t n_val = pref_split(order, n_pairs, c->val_fraction, c->seed);
    ps.e = &enc;
    ps.pair_row = pair_row;
    ps.pad = tok_pad_id(b.tok) >= 0 ? tok_pad_id(b.tok) : eos;
    src.val = order + (n_pairs - n_val);
    src.n_val = n_val;
    src.fill = fill_pairs;
    src.ctx = &ps;
    if ((rc = pref_order_init(&src.order, order, n_pairs - n_val, c->train.batch, c->train.accum, c->seed, err))) goto done;
    sum->n_train = n_pairs - n_val;
    sum->n_val = n_val;
    int longest = 2;
    for (size_t i = 0; i < enc.n; i++)
        if (enc.len[i] > longest) longest = enc.len[i];
    const int T = longest - 1;

    /* ---- the reference pass (cached) ---- */
    ref_lp = calloc(enc.n, sizeof *ref_lp);
    if (!ref_lp) goto nomem;
    ps.ref = ref_lp;
    model *refm;
    if ((rc = pref_reference(&ref, &refm, c->ref_dir, &b, "DPO", err))) goto done;
    pref_ref_fingerprint(refm, sum->ref_fingerprint);
    if ((rc = pref_state_check(&st, c, data_hash, sum->ref_fingerprint, "pairs", err))) goto done;
    if ((rc = reference_logps(&p, refm, &ps, n_pairs, sum->ref_fingerprint, ref_lp, sum, err))) goto done;
    model_bundle_free(&ref); /* never two models while training */

    /* ---- the trainer ---- */
    c->steps = pref_total_steps(c->steps, c->epochs, sum->n_train, c->train.batch, src.order.accum);
    if (c->eval_every < 0) c->eval_every = 100;
    if (c->save_every < 0) c->save_every = 500;
    sum->total_steps = c->steps;
    pref_train_params tp = {c, c->train, &st, &own, data_hash, sum->ref_fingerprint};
    tp.train.batch = 2 * c->train.batch; /* c->train keeps pairs per micro-batch (saved); tp counts rows */
    tp.train.accum = src.order.accum;
    tp.train.context = T;
    if ((rc = dpo_head_init(&h, &p.dpo, tp.train.batch, T, err))) goto done;
    train_loop_summary ls;
    rc = pref_train_run(&tp, &b, dpo_train_head(&h), pref_source_data(&src), &sum->start_step, &ls, err);
    sum->steps_done = ls.steps_done;
    sum->first_val_loss = ls.first_val_loss;
    sum->final_val_loss = ls.final_val_loss;
    sum->final_loss = ls.final_loss;
    sum->final_val = ls.final_val;
    sum->tokens_per_s = ls.tokens_per_s;
    sum->elapsed_s = ls.elapsed_s;
    goto done;
nomem:
    rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory setting up the DPO run");
done:
    pref_order_free(&src.order);
    pref_state_free(&st);
    free(order);
    free(pair_row);
    free(ref_lp);
    dpo_head_free(&h);
    model_bundle_free(&ref);
    model_bundle_free(&b);
    sft_encoded_free(&enc);
    sft_texts_free(&texts);
    return rc;
}
