/* rollout.c — prompts, sampled groups, training rows and rewards for the online trainers (see
 * rollout.h). */
#include "src/train/rollout.h"

#include <cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/fileio.h"
#include "src/core/rng.h"
#include "src/gen/generate.h"
#include "src/gen/prompt.h"
#include "src/train/score_head.h"
#include "src/train/score_train.h"
#include "src/world/world.h"

/* ---- programmatic rewards ---- */

int reward_fn_parse(const char *spec, reward_fn *out, rlhf_error *err) {
    memset(out, 0, sizeof *out);
    if (spec && strcmp(spec, "toy") == 0) {
        out->kind = 0;
        return RLHF_OK;
    }
    if (spec && strncmp(spec, "contains:", 9) == 0 && spec[9] && strlen(spec + 9) < sizeof out->text) {
        out->kind = 1;
        snprintf(out->text, sizeof out->text, "%s", spec + 9);
        return RLHF_OK;
    }
    return rlhf_errorf(err, RLHF_ERR_INVALID, "unknown reward function \"%s\" (use toy or contains:TEXT)", spec ? spec : "");
}

int reward_fn_score(const reward_fn *f, const char *prompt, const char *completion, double *reward, rlhf_error *err) {
    if (f->kind == 1) {
        *reward = strstr(completion, f->text) ? 1.0 : 0.0;
        return RLHF_OK;
    }
    world_verdict v;
    int rc = world_verify(prompt, completion, &v, err);
    if (rc) return rc;
    *reward = v.reward;
    return RLHF_OK;
}

/* ---- the scorer ---- */

int rollout_scorer_open_rm(rollout_scorer *s, const char *rm_dir, rlhf_error *err) {
    memset(&s->rm, 0, sizeof s->rm);
    s->use_rm = 0;
    int rc = score_model_load(&s->rm, rm_dir, err); /* a classifier directory or a LoRA adapter on its base */
    if (rc) return rc;
    if (s->rm.m.config.num_labels != 1) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                         "%s is not a reward model (it has %d score labels; rlhf reward train writes one with 1)", rm_dir,
                         s->rm.m.config.num_labels);
    } else if (!s->rm.tok) {
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s: the reward model has no tokenizer (it scores text)", rm_dir);
    }
    if (rc) {
        model_bundle_free(&s->rm);
        return rc;
    }
    s->use_rm = 1;
    return RLHF_OK;
}

void rollout_scorer_free(rollout_scorer *s) {
    if (s->use_rm) model_bundle_free(&s->rm);
    s->use_rm = 0;
}

#define RM_ROWS 8 /* rows per reward-model forward */

/* Reward-model scores of prompt + completion texts, RM_ROWS rows per forward padded to the
 * longest; each row is read at its own last token (causal: the padding after it is not seen). */
static int rm_scores(rollout_scorer *s, const char *const *prompts, const char *const *completions, int n, double *out,
                     rlhf_error *err) {
    model *m = &s->rm.m;
    const int ctx = m->config.context;
    const int32_t pad = m->config.pad_id >= 0 ? m->config.pad_id : 0;
    tok_ids ids[RM_ROWS];
    memset(ids, 0, sizeof ids);
    int32_t *tokens = malloc((size_t)RM_ROWS * ctx * sizeof *tokens);
    int32_t lengths[RM_ROWS];
    float scores[RM_ROWS];
    model_acts a = {0};
    int rc = tokens ? RLHF_OK : rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for reward-model scores");
    for (int first = 0; !rc && first < n; first += RM_ROWS) {
        const int k = n - first < RM_ROWS ? n - first : RM_ROWS;
        int T = 1;
        for (int r = 0; r < k && !rc; r++) {
            const size_t lp = strlen(prompts[first + r]), lc = strlen(completions[first + r]);
            char *text = malloc(lp + lc + 1);
            if (!text) {
                rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for reward-model scores");
                break;
            }
            memcpy(text, prompts[first + r], lp);
            memcpy(text + lp, completions[first + r], lc + 1);
            rc = tok_encode(s->rm.tok, text, lp + lc, s->rm.add_bos ? TOK_ENCODE_ADD_BOS : 0, &ids[r], err);
            free(text);
            if (!rc && ids[r].n == 0) rc = rlhf_errorf(err, RLHF_ERR_INVALID, "an empty text to score");
            if (rc) break;
            const int len = (int)(ids[r].n < (size_t)ctx ? ids[r].n : (size_t)ctx);
            /* longer than the context: keep the end, which the score reads */
            const int32_t *src = ids[r].ids + (ids[r].n - (size_t)len);
            lengths[r] = len;
            if (len > T) T = len;
            for (int t = 0; t < len; t++)
                if (src[t] < 0 || src[t] >= m->config.vocab_size)
                    rc = rlhf_errorf(err, RLHF_ERR_INVALID, "the reward model's tokenizer gave id %d beyond its %d embeddings",
                                     src[t], m->config.vocab_size);
        }
        if (!rc && (a.B < k || a.T < T)) {
            model_acts_free(&a);
            rc = model_acts_init(&a, &m->config, RM_ROWS, T > a.T ? T : a.T, err);
        }
        for (int r = 0; r < k && !rc; r++) {
            const int32_t *src = ids[r].ids + (ids[r].n - (size_t)lengths[r]);
            for (int t = 0; t < T; t++) tokens[(size_t)r * T + t] = t < lengths[r] ? src[t] : pad;
        }
        if (!rc) rc = model_forward(m, &a, tokens, k, T, err);
        if (!rc) rc = score_head_forward(m, &a, lengths, k, scores, err);
        for (int r = 0; r < k && !rc; r++) out[first + r] = scores[r];
        for (int r = 0; r < RM_ROWS; r++) tok_ids_free(&ids[r]);
    }
    for (int r = 0; r < RM_ROWS; r++) tok_ids_free(&ids[r]);
    model_acts_free(&a);
    free(tokens);
    return rc;
}

int rollout_score(rollout_scorer *s, const char *const *prompts, const char *const *completions, const int *has_eos,
                  int n, double *rewards, rlhf_error *err) {
    int rc = RLHF_OK;
    if (s->use_rm) rc = rm_scores(s, prompts, completions, n, rewards, err);
    for (int i = 0; i < n && !rc && !s->use_rm; i++) rc = reward_fn_score(&s->fn, prompts[i], completions[i], &rewards[i], err);
    for (int i = 0; i < n && !rc; i++)
        if (has_eos && !has_eos[i]) rewards[i] -= s->missing_eos_penalty;
    return rc;
}

/* ---- prompts ---- */

int rollout_prompts_encode(const model_bundle *b, const char *const *prompts, size_t n, rollout_ids **out, int *longest,
                           rlhf_error *err) {
    *out = NULL;
    *longest = 1;
    rollout_ids *v = calloc(n ? n : 1, sizeof *v);
    if (!v) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the prompts");
    int rc = RLHF_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        prompt_request rq = {0};
        rq.input = prompts[i];
        rq.chat = b->chat_template != NULL;
        rq.chat_template = b->chat_template;
        rq.bos_token = b->bos_token;
        rq.eos_token = b->eos_token;
        rq.add_bos = b->add_bos;
        char *text = NULL;
        int add_bos = 0;
        if ((rc = prompt_assemble(&text, &add_bos, &rq, err))) break;
        tok_ids ids = {0};
        rc = tok_encode(b->tok, text, strlen(text), (add_bos ? TOK_ENCODE_ADD_BOS : 0) | (rq.chat ? TOK_ENCODE_ALLOW_SPECIAL : 0),
                        &ids, err);
        v[i].text = text;
        if (rc) break;
        if (ids.n == 0) {
            tok_ids_free(&ids);
            rc = rlhf_errorf(err, RLHF_ERR_INVALID, "prompt %zu is empty", i + 1);
            break;
        }
        v[i].ids = ids.ids;
        v[i].n = (int)ids.n;
        if ((int)ids.n > *longest) *longest = (int)ids.n;
    }
    if (rc) {
        rollout_prompts_free(v, n);
        return rc;
    }
    *out = v;
    return RLHF_OK;
}

void rollout_prompts_free(rollout_ids *ids, size_t n) {
    if (!ids) return;
    for (size_t i = 0; i < n; i++) {
        free(ids[i].ids);
        free(ids[i].text);
    }
    free(ids);
}

/* ---- batches ---- */

int rollout_batch_init(rollout_batch *rb, int rows, int T, rlhf_error *err) {
    memset(rb, 0, sizeof *rb);
    rb->rows = rows;
    rb->T = T;
    rb->tokens = malloc((size_t)rows * T * sizeof *rb->tokens);
    rb->targets = malloc((size_t)rows * T * sizeof *rb->targets);
    rb->len = malloc((size_t)rows * sizeof *rb->len);
    rb->n_comp = malloc((size_t)rows * sizeof *rb->n_comp);
    rb->eos = malloc((size_t)rows * sizeof *rb->eos);
    rb->rewards = malloc((size_t)rows * sizeof *rb->rewards);
    rb->prompt = malloc((size_t)rows * sizeof *rb->prompt);
    if (!rb->tokens || !rb->targets || !rb->len || !rb->n_comp || !rb->eos || !rb->rewards || !rb->prompt) {
        rollout_batch_free(rb);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for a rollout batch of %d rows", rows);
    }
    return RLHF_OK;
}

void rollout_batch_free(rollout_batch *rb) {
    free(rb->tokens);
    free(rb->targets);
    free(rb->len);
    free(rb->n_comp);
    free(rb->eos);
    free(rb->rewards);
    free(rb->prompt);
    memset(rb, 0, sizeof *rb);
}

void rollout_gen_params(const rollout_gen *g, gen_params *gp) {
    gen_params_defaults(gp);
    gp->strategy = GEN_STRATEGY_SAMPLE;
    gp->sampling.temperature = g->temperature;
    gp->n = g->G;
    gp->max_tokens = g->max_new_tokens;
    gp->packed = g->packed;
}

int rollout_make(const model_bundle *b, const rollout_ids *prompt_ids, const char *const *prompt_texts,
                 const size_t *idx, int n, const rollout_gen *g, const uint64_t *seeds, rollout_scorer *s,
                 rollout_sink_fn sink, void *sink_ctx, long step, rollout_batch *rb, rlhf_error *err) {
    const int G = g->G, T = rb->T;
    if (n * G > rb->rows) return rlhf_errorf(err, RLHF_ERR_INVALID, "rollout: %d rows exceed the batch's %d", n * G, rb->rows);
    const int rows = n * G;
    char **texts = calloc((size_t)rows, sizeof *texts);
    const char **ptexts = calloc((size_t)rows, sizeof *ptexts);
    gen_result *res = calloc((size_t)n, sizeof *res);
    const int32_t **pids = calloc((size_t)n, sizeof *pids);
    int *plen = calloc((size_t)n, sizeof *plen);
    int rc = texts && ptexts && res && pids && plen ? RLHF_OK : rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for rollouts");
    rb->maxT = 1;
    /* every prompt's group in one batched decode: a group's long tail overlaps the others' */
    if (!rc) {
        gen_params gp;
        rollout_gen_params(g, &gp);
        for (int j = 0; j < n; j++) {
            pids[j] = prompt_ids[idx[j]].ids;
            plen[j] = prompt_ids[idx[j]].n;
        }
        rc = gen_run_batch(&b->m, b->tok, pids, plen, n, &gp, seeds, res, err);
    }
    for (int j = 0; j < n && !rc; j++) {
        const rollout_ids *ps = &prompt_ids[idx[j]];
        for (int k = 0; k < G && !rc; k++) {
            const gen_candidate *cd = &res[j].cands[k];
            const int row = j * G + k;
            if (!(texts[row] = cd->text ? strndup(cd->text, cd->text_stop) : strdup(""))) {
                rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for rollouts");
                break;
            }
            ptexts[row] = s->use_rm ? ps->text : prompt_texts[idx[j]]; /* see rollout.h */
            /* prompt + completion; targets on the completion (EOS included) */
            const int len = ps->n + cd->n_ids - 1;
            int32_t *tok = rb->tokens + (size_t)row * T, *tg = rb->targets + (size_t)row * T;
            for (int t = 0; t < T; t++) {
                tok[t] = t < len ? (t < ps->n ? ps->ids[t] : cd->ids[t - ps->n]) : 0;
                tg[t] = t >= ps->n - 1 && t < len ? cd->ids[t + 1 - ps->n] : -1;
            }
            rb->len[row] = len;
            rb->n_comp[row] = cd->n_ids;
            rb->eos[row] = cd->finish != GEN_FINISH_LENGTH;
            rb->prompt[row] = idx[j];
            if (len > rb->maxT) rb->maxT = len;
        }
    }
    if (!rc) rc = rollout_score(s, ptexts, (const char *const *)texts, rb->eos, rows, rb->rewards, err);
    for (int j = 0; j < n && !rc && sink; j++)
        for (int k = 0; k < G && !rc; k++) {
            const gen_candidate *cd = &res[j].cands[k];
            rollout_record r = {idx[j], texts[j * G + k], cd->ids, cd->n_ids, gen_candidate_seed(seeds[j], cd->index),
                                g->temperature, g->max_new_tokens, rb->rewards[j * G + k], step, b->chat_template != NULL};
            rc = sink(sink_ctx, &r, err);
        }
    for (int j = 0; res && j < n; j++) gen_result_free(&res[j]);
    for (int r = 0; texts && r < rows; r++) free(texts[r]);
    free(texts);
    free(ptexts);
    free(res);
    free(pids);
    free(plen);
    return rc;
}

/* Prompts decoded together by the evaluations (bounds their cache). */
#define EVAL_CHUNK 16

int rollout_eval_greedy(const model_bundle *b, const rollout_ids *prompt_ids, const char *const *prompt_texts,
                        const size_t *idx, size_t n, int max_new_tokens, rollout_scorer *s, double *mean, rlhf_error *err) {
    *mean = NAN;
    if (n == 0) return RLHF_OK;
    double sum = 0;
    gen_packed *packed = NULL;
    int rc = gen_packed_make(&packed, &b->m, err);
    for (size_t i0 = 0; i0 < n && !rc; i0 += EVAL_CHUNK) {
        const int nc = n - i0 < EVAL_CHUNK ? (int)(n - i0) : EVAL_CHUNK;
        const int32_t *pids[EVAL_CHUNK];
        int plen[EVAL_CHUNK];
        for (int j = 0; j < nc; j++) {
            pids[j] = prompt_ids[idx[i0 + j]].ids;
            plen[j] = prompt_ids[idx[i0 + j]].n;
        }
        gen_params gp;
        gen_params_defaults(&gp);
        gp.strategy = GEN_STRATEGY_GREEDY;
        gp.max_tokens = max_new_tokens;
        gp.packed = packed;
        gen_result gr[EVAL_CHUNK];
        if ((rc = gen_run_batch(&b->m, b->tok, pids, plen, nc, &gp, NULL, gr, err))) break;
        for (int j = 0; j < nc; j++) {
            const gen_candidate *cd = &gr[j].cands[0];
            char *txt = rc ? NULL : cd->text ? strndup(cd->text, cd->text_stop) : strdup("");
            const int eos = cd->finish != GEN_FINISH_LENGTH;
            double r = 0;
            const char *pt = s->use_rm ? prompt_ids[idx[i0 + j]].text : prompt_texts[idx[i0 + j]], *ct = txt;
            if (!rc) rc = txt ? rollout_score(s, &pt, &ct, &eos, 1, &r, err) : rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
            free(txt);
            gen_result_free(&gr[j]);
            sum += r;
        }
    }
    gen_packed_free(&packed);
    if (!rc) *mean = sum / (double)n;
    return rc;
}

int rollout_eval_sampled(const model_bundle *b, const rollout_ids *prompt_ids, const char *const *prompt_texts,
                         const size_t *idx, size_t n, const rollout_gen *g, uint64_t seed, rollout_scorer *s, double *mean,
                         rlhf_error *err) {
    *mean = NAN;
    if (n == 0) return RLHF_OK;
    rollout_batch rb;
    int longest = 1;
    for (size_t i = 0; i < n; i++)
        if (prompt_ids[idx[i]].n > longest) longest = prompt_ids[idx[i]].n;
    /* EVAL_CHUNK prompts' groups decoded together, from weights packed once */
    const int chunk = g->G >= EVAL_CHUNK ? 1 : EVAL_CHUNK / g->G;
    rollout_gen gc = *g;
    gen_packed *packed = NULL;
    int rc = gen_packed_make(&packed, &b->m, err);
    gc.packed = packed;
    if (!rc) rc = rollout_batch_init(&rb, chunk * g->G, longest + g->max_new_tokens - 1, err);
    else memset(&rb, 0, sizeof rb);
    double sum = 0;
    for (size_t i0 = 0; i0 < n && !rc; i0 += (size_t)chunk) {
        const int nc = n - i0 < (size_t)chunk ? (int)(n - i0) : chunk;
        uint64_t sd[EVAL_CHUNK];
        for (int j = 0; j < nc; j++) sd[j] = seed + i0 + (size_t)j;
        rc = rollout_make(b, prompt_ids, prompt_texts, &idx[i0], nc, &gc, sd, s, NULL, NULL, -1, &rb, err);
        for (int k = 0; k < nc * g->G && !rc; k++) sum += rb.rewards[k];
    }
    rollout_batch_free(&rb);
    gen_packed_free(&packed);
    if (!rc) *mean = sum / ((double)n * g->G);
    return rc;
}

int rollout_token_logps(model *m, model_acts *a, const int32_t *tokens, const int32_t *targets, int B, int T,
                        float temperature, float *out, rlhf_error *err) {
    int rc = model_forward(m, a, tokens, B, T, err);
    if (rc) return rc;
    const int V = m->config.vocab_size;
    if (temperature != 1.0f) {
        const float inv = 1.0f / temperature;
        for (size_t i = 0; i < (size_t)B * T * V; i++) a->logits[i] *= inv;
    }
    model_xent(a->logits, targets, NULL, B, T, V, NULL, out);
    for (size_t i = 0; i < (size_t)B * T; i++) out[i] = targets[i] >= 0 ? -out[i] : 0.0f;
    return RLHF_OK;
}

double rollout_entropy(const float *x, int V) {
    float mx = x[0];
    for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
    double z = 0, zx = 0;
    for (int v = 0; v < V; v++) {
        double e = exp((double)x[v] - mx);
        z += e;
        zx += e * ((double)x[v] - mx);
    }
    return log(z) - zx / z;
}

int rollout_order_init(rollout_order *o, const size_t *train_idx, size_t n_train, uint64_t seed, rlhf_error *err) {
    memset(o, 0, sizeof *o);
    o->train_idx = train_idx;
    o->n_train = n_train;
    o->seed = seed;
    o->pass = -1;
    o->perm = malloc((n_train ? n_train : 1) * sizeof *o->perm);
    return o->perm ? RLHF_OK : rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the prompt order");
}

void rollout_order_free(rollout_order *o) {
    free(o->perm);
    memset(o, 0, sizeof *o);
}

size_t rollout_order_at(rollout_order *o, uint64_t k) {
    const long pass = (long)(k / o->n_train);
    if (pass != o->pass) {
        rng_t r;
        rng_seed(&r, o->seed * 0x9e3779b97f4a7c15ull + (uint64_t)pass + 7);
        for (size_t i = 0; i < o->n_train; i++) o->perm[i] = o->train_idx[i];
        for (size_t i = o->n_train; i > 1; i--) {
            size_t j = (size_t)rng_below(&r, i), tmp = o->perm[i - 1];
            o->perm[i - 1] = o->perm[j];
            o->perm[j] = tmp;
        }
        o->pass = pass;
    }
    return o->perm[k % o->n_train];
}

/* ---- exact resume ---- */

void rollout_blob_io(rollout_blob *b, void *data, size_t bytes) {
    if (b->bad || !bytes) return;
    if (b->writing ? fwrite(data, 1, bytes, b->fp) != bytes : fread(data, 1, bytes, b->fp) != bytes) b->bad = 1;
}

void rollout_blob_optim(rollout_blob *b, optim *o) {
    rlhf_error e = {0};
    if (!b->bad && (b->writing ? optim_write(o, b->fp, "state", &e) : optim_read(o, b->fp, "state", &e))) b->bad = 1;
}

int rollout_common_settings(rollout_setting *set, const optim_params *o, const lora_params *l, uint64_t seed,
                            char seed_buf[24]) {
    snprintf(seed_buf, 24, "%" PRIu64, seed);
    const int lora = l && l->rank > 0;
    const rollout_setting v[ROLLOUT_COMMON_SETTINGS] = {
        {"lr", o->lr, NULL},
        {"min_lr", o->min_lr, NULL},
        {"warmup", (double)o->warmup_steps, NULL},
        {"beta1", o->beta1, NULL},
        {"beta2", o->beta2, NULL},
        {"eps", o->eps, NULL},
        {"weight_decay", o->weight_decay, NULL},
        {"grad_clip", o->grad_clip, NULL},
        {"seed", 0, seed_buf},
        {"lora_rank", lora ? l->rank : 0, NULL},
        {"lora_alpha", lora ? l->alpha : 0, NULL},
        {"lora_dropout", lora ? l->dropout : 0, NULL},
        {"lora_rslora", lora ? l->use_rslora : 0, NULL},
        {"lora_targets", 0, lora && l->targets ? l->targets : ""},
    };
    memcpy(set, v, sizeof v);
    return ROLLOUT_COMMON_SETTINGS;
}

static char *state_path(const char *out_dir) {
    const size_t n = strlen(out_dir) + sizeof ROLLOUT_STATE_FILE + 1;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", out_dir, ROLLOUT_STATE_FILE);
    return p;
}

static void add_hex(cJSON *o, const char *name, uint64_t h) {
    char buf[24];
    snprintf(buf, sizeof buf, "%016" PRIx64, h);
    cJSON_AddStringToObject(o, name, buf);
}

char *rollout_run_json(const rollout_setup *s, const rollout_setting *set, int n) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < s->n_prompts; i++)
        h = (h ^ train_hash(s->prompt_ids[i].ids, (size_t)s->prompt_ids[i].n * sizeof(int32_t))) * 0x100000001b3ull;
    add_hex(o, "data", h);
    add_hex(o, "model", train_hash(s->b.m.params, s->b.m.n_floats * sizeof(float)));
    add_hex(o, "reward", s->scorer.use_rm ? train_hash(s->scorer.rm.m.params, s->scorer.rm.m.n_floats * sizeof(float))
                                          : train_hash(&s->scorer.fn, sizeof s->scorer.fn));
    for (int i = 0; i < n; i++) {
        if (set[i].str) cJSON_AddStringToObject(o, set[i].name, set[i].str);
        else cJSON_AddNumberToObject(o, set[i].name, set[i].num);
    }
    char *js = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return js;
}

/* The first setting of `saved` whose value differs in `now` (or is missing from it), as a message. */
static int settings_differ(const cJSON *saved, const cJSON *now, char *msg, size_t size) {
    const cJSON *a;
    cJSON_ArrayForEach(a, saved) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(now, a->string);
        char *va = cJSON_PrintUnformatted(a), *vb = b ? cJSON_PrintUnformatted(b) : NULL;
        const int differ = !b || !va || !vb || strcmp(va, vb) != 0;
        if (differ) {
            const char *what = !strcmp(a->string, "data")     ? " (the prompts as encoded)"
                               : !strcmp(a->string, "model")  ? " (the starting model's weights)"
                               : !strcmp(a->string, "reward") ? " (the reward model's weights or reward function)"
                                                              : "";
            snprintf(msg, size, "%s%s was %s, now %s", a->string, what, va ? va : "?", vb ? vb : "(not set)");
        }
        free(va);
        free(vb);
        if (differ) return 1;
    }
    return 0;
}

int rollout_resume_check(const char *out_dir, int resume, const char *run_json, long *start_step, rng_t *start_rng,
                         rlhf_error *err) {
    *start_step = 0;
    char *path = state_path(out_dir);
    if (!path) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    int rc = RLHF_OK;
    if (!resume) {
        if (file_exists(path))
            rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                             "%s already holds a training run (%s); pass --resume to continue it or choose another --out",
                             out_dir, ROLLOUT_STATE_FILE);
        free(path);
        return rc;
    }
    if (!file_exists(path)) {
        rc = rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: no training state to resume (run without --resume first)", path);
        free(path);
        return rc;
    }
    train_state_info info;
    rc = train_state_read_info(path, &info, err);
    if (!rc) {
        cJSON *saved = cJSON_Parse(info.run_json), *now = cJSON_Parse(run_json);
        char msg[512];
        if (!saved || !now) rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: the saved run's settings are not valid JSON", path);
        else if (settings_differ(saved, now, msg, sizeof msg) || settings_differ(now, saved, msg, sizeof msg))
            rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                             "--resume: the run in %s was started with other settings or data: %s; resume with the "
                             "command line that started it (or choose another --out)",
                             out_dir, msg);
        cJSON_Delete(saved);
        cJSON_Delete(now);
        *start_step = info.step;
        *start_rng = info.rng;
        free(info.run_json);
    }
    free(path);
    return rc;
}

int rollout_resume_load(const char *out_dir, train *t, rollout_state_io_fn io, void *ctx, rlhf_error *err) {
    char *path = state_path(out_dir);
    if (!path) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    train_state_info info;
    void *extra = NULL;
    size_t n = 0;
    int rc = train_state_load_extra(path, t, &info, &extra, &n, err);
    if (!rc) {
        free(info.run_json);
        rollout_blob b = {0};
        b.fp = n ? fmemopen(extra, n, "rb") : NULL;
        if (!b.fp) rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: the trainer's state block is missing", path);
        if (!rc && io) rc = io(ctx, &b);
        if (!rc && (b.bad || fgetc(b.fp) != EOF))
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: the trainer's state block does not fit this run", path);
        if (b.fp) fclose(b.fp);
    }
    free(extra);
    free(path);
    return rc;
}

typedef struct {
    const rollout_loop_params *p;
    const train *t;
} saver;

static int save_policy(void *ctx, long step, const rng_t *rng, rlhf_error *err) {
    const saver *sv = ctx;
    const rollout_loop_params *lp = sv->p;
    int rc;
    if (lp->lo) {
        lora_save_info info = {lp->model_dir, "CAUSAL_LM"};
        rc = lora_save(lp->lo, lp->out_dir, &info, NULL, 0, err);
    } else {
        rc = model_bundle_save(lp->b, lp->out_dir, err);
    }
    if (!rc && lp->save_extra) rc = lp->save_extra(lp->save_extra_ctx, step, rng, err);
    if (rc || !lp->run_json) return rc;
    /* the training state last: whatever state file is on disk matches the files written before it */
    rollout_blob b = {0};
    b.writing = 1;
    b.fp = open_memstream(&b.buf, &b.len);
    if (!b.fp) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory saving the training state");
    if (lp->state_io) rc = lp->state_io(lp->save_extra_ctx, &b);
    if (fclose(b.fp) || b.bad) rc = rc ? rc : rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory saving the training state");
    char *path = rc ? NULL : state_path(lp->out_dir);
    if (!rc && !path) rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    if (!rc) {
        char *run = strdup(lp->run_json);
        train_state_info info = {step, *rng, 0, 0, run};
        rc = run ? train_state_save_extra(path, sv->t, &info, b.buf, b.len, err)
                 : rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        free(run);
    }
    free(path);
    free(b.buf);
    return rc;
}

void rollout_loop_params_init(rollout_loop_params *lp, rollout_setup *su, const char *model_dir, const char *out_dir,
                              long steps, long save_every, uint64_t seed) {
    memset(lp, 0, sizeof *lp);
    lp->steps = steps;
    lp->save_every = save_every;
    lp->seed = seed;
    lp->b = &su->b;
    lp->lo = su->use_lora ? &su->lo : NULL;
    lp->model_dir = model_dir;
    lp->out_dir = out_dir;
}

int rollout_loop_run(train *t, train_head head, train_data data, const rollout_loop_params *rp, long *steps_done,
                     double *elapsed_s, rlhf_error *err) {
    train_loop_params lp;
    memset(&lp, 0, sizeof lp);
    lp.t = t;
    lp.head = head;
    lp.data = data;
    lp.steps = rp->steps;
    lp.save_every = rp->save_every;
    lp.start_step = rp->start_step;
    if (rp->start_step > 0) lp.rng = rp->start_rng;
    else rng_seed(&lp.rng, rp->seed);
    saver sv = {rp, t};
    lp.save = save_policy;
    lp.save_ctx = &sv;
    lp.stop = rp->stop;
    lp.progress = rp->progress;
    lp.progress_ctx = rp->progress_ctx;
    lp.saved_step = rp->start_step > 0 ? rp->start_step : -1;
    train_loop_summary ls;
    int rc = train_loop_run(&lp, &ls, err);
    *steps_done = ls.steps_done;
    *elapsed_s = ls.elapsed_s;
    if (rc == RLHF_ERR_INTERRUPTED)
        rc = rlhf_errorf(err, RLHF_ERR_INTERRUPTED, "interrupted at step %ld of %ld; the last checkpoint is in %s",
                         ls.steps_done, rp->steps, rp->out_dir);
    return rc;
}

int rollout_train_init(rollout_setup *s, train *t, const train_params *tp, const lora_params *lp, uint64_t seed,
                       rlhf_error *err) {
    if (!lp || lp->rank <= 0) return train_init(t, &s->b.m, tp, err);
    lora_params l = *lp;
    if (!l.targets) l.targets = s->b.m.config.family == MODEL_FAMILY_GPT2 ? "c_attn" : "q_proj,v_proj";
    rng_t init;
    rng_seed(&init, seed);
    int rc = lora_init(&s->lo, &s->b.m, &l, &init, err);
    if (rc) return rc;
    s->use_lora = 1;
    s->base_saved = malloc((lora_merge_floats(&s->lo) ? lora_merge_floats(&s->lo) : 1) * sizeof(float));
    if (!s->base_saved) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the LoRA sampling copy");
    lora_attach(&s->lo, &s->b.m);
    return train_init_lora(t, &s->b.m, &s->lo, tp, err);
}

int rollout_sample_begin(rollout_setup *s, rlhf_error *err) {
    if (!s->use_lora || s->merged) return RLHF_OK;
    lora_detach(&s->b.m);
    lora_base_save(&s->lo, &s->b.m, s->base_saved);
    int rc = lora_merge(&s->lo, &s->b.m, err);
    s->merged = 1;
    if (rc) rollout_sample_end(s);
    return rc;
}

void rollout_sample_end(rollout_setup *s) {
    if (!s->use_lora || !s->merged) return;
    lora_base_restore(&s->lo, &s->b.m, s->base_saved);
    lora_attach(&s->lo, &s->b.m);
    s->merged = 0;
}

void rollout_reference(rollout_setup *s, int on) {
    if (s->use_lora) lora_set_enabled(&s->lo, !on);
}

void rollout_measure(rollout_setup *s, int on) {
    if (s->use_lora) lora_set_training(&s->lo, !on);
}

int rollout_setup_open(rollout_setup *s, const char *model_dir, const reward_fn *fn, const char *reward_model,
                       float missing_eos_penalty, const char *const *prompts, size_t n_prompts, int max_new_tokens,
                       double val_fraction, uint64_t seed, rlhf_error *err) {
    memset(s, 0, sizeof *s);
    s->n_prompts = n_prompts;
    int rc = model_bundle_load(&s->b, model_dir, err);
    if (rc) return rc;
    if (!s->b.tok) rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s: the model has no tokenizer (rewards read text)", model_dir);
    else if (s->b.m.config.num_labels > 0)
        rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s is a classifier, not a language model to train", model_dir);
    else if (reward_model) rc = rollout_scorer_open_rm(&s->scorer, reward_model, err);
    else if (fn) s->scorer.fn = *fn;
    s->scorer.missing_eos_penalty = missing_eos_penalty;
    /* prompts: rendered as a user turn through the chat template when there is one */
    int longest = 1;
    if (!rc) rc = rollout_prompts_encode(&s->b, prompts, n_prompts, &s->prompt_ids, &longest, err);
    if (!rc && longest + max_new_tokens > s->b.m.config.context)
        rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                         "the longest prompt (%d tokens) + --max-new-tokens %d exceeds the model's context of %d", longest,
                         max_new_tokens, s->b.m.config.context);
    s->T = longest + max_new_tokens - 1;
    if (!rc) rc = score_split(n_prompts, val_fraction, seed, &s->train_idx, &s->n_train, &s->val_idx, &s->n_val, err);
    if (!rc) rc = rollout_order_init(&s->order, s->train_idx, s->n_train, seed, err);
    if (rc) rollout_setup_close(s);
    return rc;
}

void rollout_setup_close(rollout_setup *s) {
    rollout_sample_end(s);
    if (s->b.m.lora) lora_detach(&s->b.m);
    lora_free(&s->lo);
    free(s->base_saved);
    rollout_prompts_free(s->prompt_ids, s->n_prompts);
    rollout_scorer_free(&s->scorer);
    rollout_order_free(&s->order);
    free(s->train_idx);
    free(s->val_idx);
    model_bundle_free(&s->b);
    memset(s, 0, sizeof *s);
}
