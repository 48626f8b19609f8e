/* kto_run.c — `rlhf kto`'s run: labelled examples and their KL rows, the cached reference pass,
 * example batches, the loop with the KTO head, saving (see kto.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/fileio.h"
#include "src/core/rng.h"
#include "src/formats/model_load.h"
#include "src/train/dpo.h"
#include "src/train/kto.h"
#include "src/train/pref_run.h"

void kto_run_params_defaults(kto_run_params *p) {
    memset(p, 0, sizeof *p);
    pref_common_params_defaults(&p->c);
    kto_params_defaults(&p->kto);
}

/* ---- data ---- */

int kto_texts_read_jsonl(sft_texts *t, uint8_t **desirable, const char *path, rlhf_error *err) {
    *desirable = NULL;
    int rc = sft_texts_read_jsonl(t, path, err);
    if (rc) return rc;
    /* the texts are the file's prompt/completion lines in order; read their labels */
    char *text = NULL;
    size_t len = 0;
    uint8_t *des = calloc(t->n ? t->n : 1, 1);
    if (!des) rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the labels");
    if (!rc) rc = file_read_all(path, &text, &len, err);
    long line = 0;
    size_t k = 0;
    for (char *p = text, *end = text + len; !rc && p && p < end && k < t->n;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *stop = nl ? nl : end;
        line++;
        *stop = '\0';
        char *s = p;
        p = nl ? nl + 1 : end;
        if (line != t->items[k].line) continue;
        cJSON *o = cJSON_Parse(s);
        const cJSON *label = cJSON_GetObjectItemCaseSensitive(o, "label");
        if (cJSON_GetObjectItemCaseSensitive(o, "messages"))
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s:%ld: KTO lines need \"prompt\" and \"completion\" (a \"messages\" "
                             "line holds no single judged completion)", path, line);
        else if (!label)
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s:%ld: \"label\" is missing (true: desirable, false: undesirable)",
                             path, line);
        else if (!cJSON_IsBool(label))
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s:%ld: \"label\" must be true (desirable) or false (undesirable)",
                             path, line);
        else
            des[k++] = cJSON_IsTrue(label) != 0;
        cJSON_Delete(o);
    }
    free(text);
    if (!rc && k != t->n) rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: changed while it was read", path);
    if (rc) {
        free(des);
        sft_texts_free(t);
        return rc;
    }
    *desirable = des;
    return RLHF_OK;
}

int kto_texts_from_dataset(sft_texts *t, uint8_t **desirable, const kto_dataset *d, rlhf_error *err) {
    *desirable = NULL;
    memset(t, 0, sizeof *t);
    sft_dataset sd;
    sft_dataset_init(&sd);
    int rc = RLHF_OK;
    for (size_t i = 0; i < d->n && !rc; i++) {
        const kto_example *x = &d->examples[i];
        rc = sft_dataset_push(&sd, x->prompt, x->prompt_messages, x->completion, 1.0, x->id, err);
    }
    if (!rc) rc = sft_texts_from_dataset(t, &sd, err);
    sft_dataset_free(&sd);
    uint8_t *des = rc ? NULL : calloc(d->n ? d->n : 1, 1);
    if (!rc && !des) rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the labels");
    if (rc) {
        sft_texts_free(t);
        return rc;
    }
    for (size_t i = 0; i < d->n; i++) {
        des[i] = (uint8_t)(d->examples[i].desirable != 0);
        t->items[i].line = d->examples[i].line;
    }
    *desirable = des;
    return RLHF_OK;
}

/* The reply of a chat text: its assistant messages after the prompt, joined (a KL row that puts
 * a chat completion after a plain prompt). */
static char *chat_reply(const sft_text *x) {
    cJSON *arr = cJSON_Parse(x->messages_json);
    size_t n = 1;
    const cJSON *m;
    int i = 0;
    cJSON_ArrayForEach(m, arr) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (i++ >= x->n_context && cJSON_IsString(c)) n += strlen(c->valuestring);
    }
    char *s = calloc(n, 1);
    i = 0;
    cJSON_ArrayForEach(m, arr) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (s && i++ >= x->n_context && cJSON_IsString(c)) strcat(s, c->valuestring);
    }
    cJSON_Delete(arr);
    return s;
}

/* The KL text: example pi's prompt with example cj's completion. */
static int kl_text(sft_text *out, const sft_text *pi, const sft_text *cj) {
    memset(out, 0, sizeof *out);
    out->line = pi->line;
    out->id = pi->id;
    out->no_eos = cj->no_eos;
    if (pi->prompt) {
        out->prompt = strdup(pi->prompt);
        out->completion = cj->prompt ? strdup(cj->completion) : chat_reply(cj);
        return out->prompt && out->completion ? 0 : -1;
    }
    cJSON *ctx = cJSON_Parse(pi->messages_json), *arr = cJSON_CreateArray();
    int i = 0;
    cJSON *m;
    cJSON_ArrayForEach(m, ctx) {
        if (i++ < pi->n_context) cJSON_AddItemToArray(arr, cJSON_Duplicate(m, 1));
    }
    if (cj->prompt) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "role", "assistant");
        cJSON_AddStringToObject(a, "content", cj->completion);
        cJSON_AddItemToArray(arr, a);
    } else {
        cJSON *src = cJSON_Parse(cj->messages_json);
        i = 0;
        cJSON_ArrayForEach(m, src) {
            if (i++ >= cj->n_context) cJSON_AddItemToArray(arr, cJSON_Duplicate(m, 1));
        }
        cJSON_Delete(src);
    }
    out->messages_json = cJSON_PrintUnformatted(arr);
    out->n_context = pi->n_context;
    cJSON_Delete(ctx);
    cJSON_Delete(arr);
    return out->messages_json ? 0 : -1;
}

/* ---- the data source ---- */

typedef struct {
    const sft_encoded *main, *kl; /* kl NULL without KL rows */
    const double *ref;            /* (2 n) reference log-probabilities: main rows, then KL rows */
    const uint8_t *des;           /* (n) per kept example */
    size_t n;                     /* kept examples */
    int32_t pad;
    kto_head *h;                  /* gets each micro-batch's labels */
} kto_source;

/* Row `row` of b from example k's main (kl = 0) or KL row, padded to b->T. */
static void put_row(const kto_source *s, size_t k, int kl, int row, train_batch *b) {
    const sft_encoded *e = kl ? s->kl : s->main;
    pref_put_row(b, row, e->ids + e->start[k], e->loss + e->start[k], e->len[k], s->pad, (float)s->ref[kl ? s->n + k : k]);
}

/* The KL rows of examples idx[0..n) into the head, padded to their longest. */
static void put_kl_rows(const kto_source *s, const size_t *idx, int n) {
    kto_head *h = s->h;
    int T = 1;
    for (int q = 0; q < n; q++)
        if (s->kl->len[idx[q]] - 1 > T) T = s->kl->len[idx[q]] - 1;
    train_batch kb = {.B = n, .T = T, .tokens = h->kl_tokens, .targets = h->kl_targets, .labels = h->kl_ref};
    int32_t lengths[512];
    kb.lengths = lengths;
    for (int q = 0; q < n; q++) put_row(s, idx[q], 1, q, &kb);
    h->kl_T = T;
}

/* Examples idx[0..n) into b (their rows) and the head (their labels and KL rows). */
static void fill_examples(void *ctx, const size_t *idx, int n, train_batch *b) {
    const kto_source *s = ctx;
    int T = 1;
    for (int q = 0; q < n; q++)
        if (s->main->len[idx[q]] - 1 > T) T = s->main->len[idx[q]] - 1;
    b->T = T;
    b->B = n;
    for (int q = 0; q < n; q++) {
        put_row(s, idx[q], 0, q, b);
        s->h->desirable[q] = s->des[idx[q]];
    }
    if (s->kl) put_kl_rows(s, idx, n);
}

/* The reference's log-probability of every row (main rows, then KL rows) into out (2 n). */
static int reference_logps(const kto_run_params *p, model *refm, const kto_source *s, const char *fp, uint64_t data_hash,
                           double *out, kto_summary *sum, rlhf_error *err) {
    const size_t n_rows = s->kl ? 2 * s->n : s->n;
    pref_ref_row *rows = calloc(n_rows, sizeof *rows);
    if (!rows) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the reference cache");
    for (size_t i = 0; i < n_rows; i++) {
        const sft_encoded *e = i < s->n ? s->main : s->kl;
        const size_t k = i < s->n ? i : i - s->n;
        rows[i] = (pref_ref_row){e->ids + e->start[k], e->loss + e->start[k], e->len[k], 0, 0};
    }
    pref_ref_counts counts;
    int rc = pref_ref_logps(&p->c, refm, fp, data_hash, rows, n_rows, 1, p->c.train.batch, s->pad, &counts, err);
    for (size_t i = 0; !rc && i < n_rows; i++) out[i] = rows[i].logp;
    sum->ref_cached = counts.cached;
    sum->ref_computed = counts.computed;
    free(rows);
    return rc;
}

/* TRL's KL pairing of a split: chunks of `batch` in order, each example with the previous one's
 * completion (the first with the last's). */
static void kl_partners(const size_t *list, size_t n, int batch, size_t *partner) {
    for (size_t c = 0; c < n; c += (size_t)batch) {
        const size_t m = n - c < (size_t)batch ? n - c : (size_t)batch;
        for (size_t q = 0; q < m; q++) partner[list[c + q]] = list[c + (q + m - 1) % m];
    }
}

int kto_run(const kto_run_params *pin, kto_summary *sum, rlhf_error *err) {
    kto_run_params p = *pin;
    pref_common_params *c = &p.c;
    kto_summary local;
    if (!sum) sum = &local;
    memset(sum, 0, sizeof *sum);
    sum->first_val_loss = sum->final_val_loss = sum->final_loss = NAN;
    model_bundle b = {0}, ref = {0};
    kto_head h = {0};
    sft_texts view = {0}, kl_texts = {0};
    sft_encoded enc = {0}, enc_kl = {0};
    kto_source ks = {0};
    pref_source src = {0};
    pref_state st = {0};
    size_t *kept = NULL, *order = NULL, *partner = NULL;
    uint8_t *des = NULL;
    double *ref_lp = NULL;
    int rc;
    if (!p.texts || p.texts->n == 0 || !p.desirable) return rlhf_errorf(err, RLHF_ERR_INVALID, "no examples to train on");
    const char *loss_name = kto_loss_type_name(p.kto.loss_type);
    pref_setting own_values[] = {{"beta", &p.kto.beta}, {"desirable_weight", &p.kto.desirable_weight},
                                 {"undesirable_weight", &p.kto.undesirable_weight}};
    const pref_own own = {&loss_name, own_values, 3};
    if ((rc = pref_state_open(&st, c, &own, err))) goto done;
    if ((rc = kto_loss_type_parse(loss_name, &p.kto.loss_type, err))) goto done;
    if ((rc = kto_params_validate(&p.kto, err))) goto done;
    sum->kto = p.kto;
    const int with_kl = kto_uses_kl(&p.kto);
    if (c->train.batch < 1 + with_kl || c->train.batch > 256) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "--batch must be %d..256 examples (got %d)%s", 1 + with_kl, c->train.batch,
                         with_kl ? ": the KL estimate needs another example's completion in the batch" : "");
        goto done;
    }

    int32_t eos;
    if ((rc = pref_policy_load(&b, c->model_dir, "KTO", &eos, err))) goto done;
    if (c->max_length <= 0 || c->max_length > b.m.config.context) c->max_length = b.m.config.context;

    /* ---- rows: each example's text, numbered so encoded rows map back to examples: a file's
     * lines when they are all known (unique and increasing), else the examples' indices ---- */
    const size_t n_in = p.texts->n;
    int use_lines = 1;
    for (size_t i = 0; i < n_in; i++)
        use_lines &= p.texts->items[i].line > 0 && (i == 0 || p.texts->items[i].line > p.texts->items[i - 1].line);
    view.items = malloc(n_in * sizeof *view.items);
    kept = malloc(n_in * sizeof *kept);
    if (!view.items || !kept) goto nomem;
    view.n = view.cap = n_in;
    for (size_t i = 0; i < n_in; i++) {
        view.items[i] = p.texts->items[i]; /* borrowed strings: only the array is ours */
        if (!use_lines) view.items[i].line = (long)i + 1;
    }
    sft_encoder ec = {b.tok, b.chat_template, b.bos_token, b.eos_token, b.add_bos, eos, c->max_length, c->truncate};
    const char *desc = c->data_desc ? c->data_desc : "examples";
    rc = sft_encode(&enc, &view, &ec, desc, err);
    if (rc) goto done;
    size_t n = 0;
    for (size_t k = 0, i = 0; k < enc.n; k++) {
        while (i < n_in && view.items[i].line != enc.line[k]) i++;
        if (i == n_in) {
            rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s: encoded rows out of order", desc);
            goto done;
        }
        kept[n++] = i++;
    }
    des = malloc(n ? n : 1);
    if (!des) goto nomem;
    for (size_t k = 0; k < n; k++) {
        des[k] = p.desirable[kept[k]] != 0;
        if (des[k]) sum->n_desirable++;
        else sum->n_undesirable++;
    }
    sum->n_examples = n;
    sum->n_dropped = n_in - n;
    if (n == 0) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "no example keeps its completion within %d tokens (%zu dropped)", c->max_length,
                         sum->n_dropped);
        goto done;
    }
    /* split: a seeded shuffle, the last val_fraction held out */
    order = malloc(n * sizeof *order);
    partner = malloc(n * sizeof *partner);
    if (!order || !partner) goto nomem;
    const size_t n_val = pref_split(order, n, c->val_fraction, c->seed);
    const size_t n_train = n - n_val;
    kl_partners(order, n_train, c->train.batch, partner);
    kl_partners(order + n_train, n_val, c->train.batch, partner);
    if (with_kl) {
        kl_texts.items = calloc(n, sizeof *kl_texts.items);
        if (!kl_texts.items) goto nomem;
        kl_texts.cap = n;
        for (size_t k = 0; k < n; k++) {
            if (kl_text(&kl_texts.items[kl_texts.n++], &view.items[kept[k]], &view.items[kept[partner[k]]])) goto nomem;
        }
        if ((rc = sft_encode(&enc_kl, &kl_texts, &ec, desc, err))) goto done;
        if (enc_kl.n != n) {
            size_t k = 0;
            while (k < enc_kl.n && enc_kl.line[k] == enc.line[k]) k++;
            rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s:%ld: the KL row (this prompt with another example's completion) "
                             "keeps no completion token within %d tokens; raise --max-length or shorten the prompt",
                             desc, enc.line[k], c->max_length);
            goto done;
        }
    }
    ks.main = &enc;
    ks.kl = with_kl ? &enc_kl : NULL;
    ks.des = des;
    ks.n = n;
    ks.pad = tok_pad_id(b.tok) >= 0 ? tok_pad_id(b.tok) : eos;
    ks.h = &h;
    src.val = order + n_train;
    src.n_val = n_val;
    src.fill = fill_examples;
    src.ctx = &ks;
    if ((rc = pref_order_init(&src.order, order, n_train, c->train.batch, c->train.accum, c->seed, err))) goto done;
    sum->n_train = n_train;
    sum->n_val = n_val;
    int longest = 2;
    for (size_t k = 0; k < n; k++) {
        if (enc.len[k] > longest) longest = enc.len[k];
        if (ks.kl && enc_kl.len[k] > longest) longest = enc_kl.len[k];
    }
    const int T = longest - 1;

    /* ---- the reference pass (cached) ---- */
    ref_lp = calloc(2 * n, sizeof *ref_lp);
    if (!ref_lp) goto nomem;
    ks.ref = ref_lp;
    model *refm;
    if ((rc = pref_reference(&ref, &refm, c->ref_dir, &b, "KTO", err))) goto done;
    /* the data as trained on: both rows' ids and masks, and the labels */
    const uint64_t data_hash = sft_encoded_hash(&enc) ^ (ks.kl ? sft_encoded_hash(&enc_kl) * 0xff51afd7ed558ccdull : 0) ^
                               train_hash(des, n) * 0xc4ceb9fe1a85ec53ull;
    char fp[33];
    pref_ref_fingerprint(refm, fp);
    if ((rc = pref_state_check(&st, c, data_hash, fp, "examples", err))) goto done;
    if ((rc = reference_logps(&p, refm, &ks, fp, data_hash, ref_lp, sum, err))) goto done;
    model_bundle_free(&ref); /* never two models while training */

    /* ---- the trainer ---- */
    c->steps = pref_total_steps(c->steps, c->epochs, n_train, c->train.batch, src.order.accum);
    if (c->eval_every < 0) c->eval_every = 100;
    if (c->save_every < 0) c->save_every = 500;
    sum->total_steps = c->steps;
    pref_train_params tp = {c, c->train, &st, &own, data_hash, fp};
    tp.train.accum = src.order.accum;
    tp.train.context = T;
    if ((rc = kto_head_init(&h, &p.kto, &b.m.config, tp.train.batch, T, err))) goto done;
    train_loop_summary ls;
    rc = pref_train_run(&tp, &b, kto_train_head(&h), pref_source_data(&src), &sum->start_step, &ls, err);
    sum->steps_done = ls.steps_done;
    sum->first_val_loss = ls.first_val_loss;
    sum->final_val_loss = ls.final_val_loss;
    sum->final_loss = ls.final_loss;
    sum->final_val = ls.final_val;
    sum->tokens_per_s = ls.tokens_per_s;
    sum->elapsed_s = ls.elapsed_s;
    goto done;
nomem:
    rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory setting up the KTO run");
done:
    pref_state_free(&st);
    free(view.items);
    pref_order_free(&src.order);
    free(order);
    free(partner);
    free(kept);
    free(des);
    free(ref_lp);
    kto_head_free(&h);
    model_bundle_free(&ref);
    model_bundle_free(&b);
    sft_encoded_free(&enc);
    sft_encoded_free(&enc_kl);
    sft_texts_free(&kl_texts);
    return rc;
}
