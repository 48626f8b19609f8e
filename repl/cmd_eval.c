/* cmd_eval.c — `rlhf eval --tasks toy`: a model on the task world's held-out prompts, judged by
 * the world's verifier (src/world/world.h): exact-match accuracy per family, zero-shot or
 * K-shot, precision / recall / F1 for the classification families, corpus BLEU for translation
 * (src/world/bleu.h), the rate of each unwanted behaviour (wrong, rambling, rude, never stops),
 * perplexity on held-out narrative text, and with --ref the KL from a reference model along the
 * model's own answers. A table, or --json; --runs-db records it as a run of kind eval. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feedback/store.h"
#include "repl/commands.h"
#include "repl/default_model.h"
#include "repl/out.h"
#include "repl/world_prompt.h"
#include "src/formats/model_load.h"
#include "src/gen/generate.h"
#include "src/gen/prompt.h"
#include "src/world/bleu.h"
#include "src/world/world.h"

static const char *const eval_usage =
    "rlhf eval [--model PATH] --tasks toy [--split test|val|train] [--n N] [--families LIST] [--shots K] "
    "[--max-tokens N] [--samples K [--temperature T] [--seed S]] [--stories N] [--ref DIR] [--json] [--runs-db FILE]";

#define MAX_FAMILIES 32
#define MAX_LABELS 4

typedef struct {
    int n, correct, wrong, rambling, rude, endless, unwanted;
    int conf[MAX_LABELS][MAX_LABELS + 1]; /* [true][predicted]; the last column: no label read */
} fam_stats;

static int label_index(const char *const *labels, const char *s) {
    for (int i = 0; labels && labels[i]; i++)
        if (strcmp(labels[i], s) == 0) return i;
    return -1;
}

/* One answer (chat template when the model has one): the text before any stop, and the ids of
 * the prompt as decoded plus the answer's ids (for the KL to a reference). */
typedef struct {
    char *text;
    gen_finish finish;
    int32_t *ids; /* prompt ids then answer ids; owned */
    int n_prompt, n_ids;
} eval_answer;

/* How answers are decoded: greedily (samples 0), or `samples` candidates per prompt from one
 * prefill with the model's own sampling defaults (generation_config's, else temperature 1 and
 * top-k 50, as rlhf chat samples), seeded per prompt so a rerun draws the same answers. */
typedef struct {
    int samples, max_tokens;
    float temperature; /* < 0: the model's default */
    uint64_t seed;
    const gen_packed *packed; /* the model's step weights, packed once for every answer */
} eval_decoding;

static uint64_t text_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static void eval_answers_free(eval_answer *a, int n) {
    for (int k = 0; k < n; k++) free(a[k].text), free(a[k].ids);
}

/* Prompts answered together: one gen_run_batch decodes them all (each prompt's answers are
 * bit-for-bit what a gen_run of it alone gives), which overlaps their long answers. */
#define EVAL_BATCH 8

/* The answers to prompts[0..B): 1 (greedy) or d->samples each, into out[j * n + k]. */
static int answers(model_bundle *b, const char *const *prompts, int B, const prompt_example *shots, int n_shots,
                   const eval_decoding *d, eval_answer *out, rlhf_error *err) {
    const int n = d->samples > 0 ? d->samples : 1;
    memset(out, 0, (size_t)B * n * sizeof *out);
    tok_ids ids[EVAL_BATCH];
    const int32_t *pids[EVAL_BATCH];
    int plen[EVAL_BATCH];
    uint64_t seeds[EVAL_BATCH];
    gen_result r[EVAL_BATCH];
    int rc = RLHF_OK, n_enc = 0, ran = 0;
    for (; n_enc < B && !rc; n_enc++) {
        if ((rc = world_prompt_encode(b, prompts[n_enc], shots, n_shots, NULL, &ids[n_enc], NULL, err))) break;
        pids[n_enc] = ids[n_enc].ids;
        plen[n_enc] = (int)ids[n_enc].n;
        seeds[n_enc] = d->seed ^ text_hash(prompts[n_enc]);
    }
    gen_params gp;
    gen_params_defaults(&gp);
    gp.strategy = GEN_STRATEGY_GREEDY;
    if (d->samples > 0) {
        const model_gen_defaults *md = &b->defaults;
        gp.strategy = GEN_STRATEGY_SAMPLE;
        gp.sampling.temperature = d->temperature >= 0 ? d->temperature : md->has_temperature ? md->temperature : 1.0f;
        gp.sampling.top_k = md->has_top_k ? md->top_k : 50;
        gp.sampling.top_p = md->has_top_p ? md->top_p : 1.0f;
        gp.n = n;
    }
    gp.max_tokens = d->max_tokens;
    gp.truncate_prompt = 1;
    gp.packed = d->packed;
    if (!rc) {
        rc = gen_run_batch(&b->m, b->tok, pids, plen, B, &gp, seeds, r, err);
        ran = !rc;
    }
    for (int j = 0; j < B && !rc; j++) {
        for (int k = 0; k < n && k < r[j].n && !rc; k++) {
            const gen_candidate *c = &r[j].cands[k];
            eval_answer *o = &out[j * n + k];
            o->text = strndup(c->text ? c->text : "", c->text ? c->text_stop : 0);
            o->finish = c->finish;
            o->n_prompt = r[j].n_prompt;
            o->n_ids = r[j].n_prompt + c->n_ids;
            o->ids = malloc((size_t)(o->n_ids ? o->n_ids : 1) * sizeof *o->ids);
            if (o->ids) { /* the prompt as the decoder saw it: its last n_prompt ids */
                memcpy(o->ids, ids[j].ids + ids[j].n - (size_t)r[j].n_prompt, (size_t)r[j].n_prompt * sizeof *o->ids);
                memcpy(o->ids + r[j].n_prompt, c->ids, (size_t)c->n_ids * sizeof *o->ids);
            }
            if (!o->text || !o->ids) rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        }
        if (!rc && r[j].n < n) rc = rlhf_errorf(err, RLHF_ERR_INVALID, "the decoder returned %d of %d candidates", r[j].n, n);
    }
    for (int j = 0; ran && j < B; j++) gen_result_free(&r[j]);
    for (int j = 0; j < n_enc; j++) tok_ids_free(&ids[j]);
    if (rc) eval_answers_free(out, B * n);
    return rc;
}

/* Forward passes of one sequence at a time, the activations allocated once. */
typedef struct {
    model *m;
    model_acts a;
    int T;
} seq_forward;

static int seq_forward_init(seq_forward *f, model *m, rlhf_error *err) {
    f->m = m;
    /* stories and answers are short: 512 positions bound the logits of a large vocabulary */
    f->T = m->config.context < 512 ? m->config.context : 512;
    return model_acts_init(&f->a, &m->config, 1, f->T, err);
}

/* Mean KL(policy || reference) per answer token, summed into *kl_sum over *n_tok positions: at
 * each position that predicts an answer token, the full-vocabulary KL between the two models'
 * next-token distributions (exact, not a sampled estimate). */
static int answer_kl(seq_forward *pol, seq_forward *ref, const eval_answer *ans, double *kl_sum, long *n_tok,
                     rlhf_error *err) {
    int n = ans->n_ids < pol->T ? ans->n_ids : pol->T;
    const int32_t *ids = ans->ids + (ans->n_ids - n); /* keep the answer: drop the oldest prompt ids */
    int first = ans->n_prompt - (ans->n_ids - n);       /* first answer position */
    if (first < 1 || n - first < 1) return RLHF_OK;
    int rc = model_forward(pol->m, &pol->a, ids, 1, n, err);
    if (!rc) rc = model_forward(ref->m, &ref->a, ids, 1, n, err);
    if (rc) return rc;
    const int V = pol->m->config.vocab_size;
    for (int t = first - 1; t < n - 1; t++) {
        const float *p = pol->a.logits + (size_t)t * V, *q = ref->a.logits + (size_t)t * V;
        double mp = p[0], mq = q[0];
        for (int v = 1; v < V; v++) mp = p[v] > mp ? p[v] : mp, mq = q[v] > mq ? q[v] : mq;
        double zp = 0, zq = 0;
        for (int v = 0; v < V; v++) zp += exp(p[v] - mp), zq += exp(q[v] - mq);
        double lzp = log(zp) + mp, lzq = log(zq) + mq, kl = 0;
        for (int v = 0; v < V; v++) {
            double lp = p[v] - lzp;
            kl += exp(lp) * (lp - (q[v] - lzq));
        }
        *kl_sum += kl;
        (*n_tok)++;
    }
    return RLHF_OK;
}

/* Perplexity on `count` held-out stories of the split (world_story seeds split apart, as
 * `rlhf world --format text` writes them): exp of the mean next-token loss over every token
 * that has one before it (a story longer than the context keeps its first tokens). */
static int story_perplexity(model_bundle *b, seq_forward *f, world_split split, long count, double *ppl, long *n_tok,
                            rlhf_error *err) {
    double nll = 0;
    *n_tok = 0;
    const int V = b->m.config.vocab_size;
    float *losses = malloc((size_t)f->T * sizeof *losses);
    int32_t *targets = malloc((size_t)f->T * sizeof *targets);
    if (!losses || !targets) {
        free(losses), free(targets);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    }
    int rc = RLHF_OK;
    for (long i = 0; i < count && !rc; i++) {
        char story[2048];
        world_story((uint64_t)i * 3 + (uint64_t)split, story, sizeof story);
        tok_ids ids = {0};
        int bos = b->add_bos && tok_bos_id(b->tok) >= 0;
        if ((rc = tok_encode(b->tok, story, strlen(story), bos ? TOK_ENCODE_ADD_BOS : 0, &ids, err))) break;
        int n = (int)ids.n < f->T ? (int)ids.n : f->T;
        if (n >= 2 && !(rc = model_forward(f->m, &f->a, ids.ids, 1, n - 1, err))) {
            memcpy(targets, ids.ids + 1, (size_t)(n - 1) * sizeof *targets);
            model_xent(f->a.logits, targets, NULL, 1, n - 1, V, NULL, losses);
            for (int t = 0; t < n - 1; t++) nll += losses[t];
            *n_tok += n - 1;
        }
        tok_ids_free(&ids);
    }
    free(losses), free(targets);
    *ppl = *n_tok ? exp(nll / (double)*n_tok) : NAN;
    return rc;
}

/* Parses "add,capital" into a family mask; 0 or the index of the unknown name + 1 as -(i+1). */
static int parse_families(const char *list, int *on, int F) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", list);
    for (int f = 0; f < F; f++) on[f] = 0;
    int any = 0;
    for (char *save = NULL, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        int f = world_family_find(w);
        if (f < 0 || f >= F) return -1;
        on[f] = 1;
        any = 1;
    }
    return any ? 0 : -1;
}

static double rate(int k, int n) { return n ? (double)k / n : 0; }

int cmd_eval(int argc, char **argv) {
    if (command_wants_help(argc, argv)) {
        out_printf("usage: %s\n\n", eval_usage);
        out_printf("Evaluates a model on the task world (rlhf world): --n prompts per family of --split (default\n"
                   "test, 20), answered greedily (--max-tokens, default 48), zero-shot or with --shots K solved\n"
                   "examples from the train split, or with --samples K: K sampled answers per prompt with the\n"
                   "model's own sampling defaults (its generation_config, else temperature 1, top-k 50: what\n"
                   "rlhf chat draws), --temperature T overriding, --seed S (default 1) fixing the draws; then\n"
                   "every rate is over all answers (the accuracy a chat user sees). Each answer is\n"
                   "judged by the world's verifier. Prints per family the\n"
                   "exact-match accuracy and the rate of wrong, rambling, rude and never-ending answers (no EOS\n"
                   "within --max-tokens); \"unwanted\" is the share of answers that ramble, are rude or never\n"
                   "end. Precision / recall / F1 per label of the classification families; corpus BLEU-4 of\n"
                   "the translate family's answers against the reference answers (sacrebleu's corpus BLEU with\n"
                   "its default exp smoothing; words lower-cased, punctuation split off); perplexity on --stories\n"
                   "N held-out narrative paragraphs of the split (default 20, as rlhf world --family stories\n"
                   "writes them; 0 skips it).\n"
                   "  --families LIST  only these families (comma-separated; default all)\n"
                   "  --ref DIR        also the KL(model || DIR) per answer token along the model's own\n"
                   "                   answers (exact over the vocabulary; the two must share the tokenizer)\n"
                   "--model defaults to the built-in default model. --runs-db FILE records the result as a run\n"
                   "(kind eval; metrics accuracy, accuracy/FAMILY, unwanted, rambling, rude, no_eos, bleu,\n"
                   "perplexity, kl).\n");
        return 0;
    }
    const char *model_path = NULL, *tasks = NULL, *split_name = "test", *runs_db = NULL, *ref_path = NULL;
    const char *families = NULL;
    long n = 20, shots = 0, max_tokens = 48, stories = 20, samples = 0, seed = 1;
    double temperature = -1;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (strcmp(a, "--json") == 0) {
            json = 1;
            continue;
        }
        if (!v) {
            out_error("%s needs a value", a);
            out_error("usage: %s", eval_usage);
            return 2;
        }
        i++;
        if (strcmp(a, "--model") == 0 || strcmp(a, "-m") == 0) model_path = v;
        else if (strcmp(a, "--tasks") == 0) tasks = v;
        else if (strcmp(a, "--split") == 0) split_name = v;
        else if (strcmp(a, "--runs-db") == 0) runs_db = v;
        else if (strcmp(a, "--ref") == 0) ref_path = v;
        else if (strcmp(a, "--families") == 0) families = v;
        else if (strcmp(a, "--n") == 0 && (n = strtol(v, &end, 10), !*end && n >= 1)) continue;
        else if (strcmp(a, "--shots") == 0 && (shots = strtol(v, &end, 10), !*end && shots >= 0 && shots <= 16)) continue;
        else if (strcmp(a, "--max-tokens") == 0 && (max_tokens = strtol(v, &end, 10), !*end && max_tokens >= 1)) continue;
        else if (strcmp(a, "--stories") == 0 && (stories = strtol(v, &end, 10), !*end && stories >= 0)) continue;
        else if (strcmp(a, "--samples") == 0 && (samples = strtol(v, &end, 10), !*end && samples >= 0 && samples <= 64)) continue;
        else if (strcmp(a, "--seed") == 0 && (seed = strtol(v, &end, 10), !*end && seed >= 0)) continue;
        else if (strcmp(a, "--temperature") == 0 && (temperature = strtod(v, &end), !*end && temperature > 0 && temperature <= 100))
            continue;
        else {
            out_error("%s: unknown flag or bad value '%s'", a, v);
            out_error("usage: %s", eval_usage);
            return 2;
        }
    }
    if (!tasks || strcmp(tasks, "toy") != 0) {
        out_error("--tasks toy is required (the task world; other task sets are not implemented yet)");
        out_error("usage: %s", eval_usage);
        return 2;
    }
    if (temperature > 0 && samples == 0) {
        out_error("--temperature needs --samples K (without it answers are greedy)");
        return 2;
    }
    eval_decoding dec = {(int)samples, (int)max_tokens, (float)temperature, (uint64_t)seed, NULL};
    const int per_prompt = samples > 0 ? (int)samples : 1;
    rlhf_error err = {0};
    world_split split;
    if (world_split_parse(split_name, &split, &err)) return out_error("--split: %s", err.msg), 2;
    const int F = world_family_count() < MAX_FAMILIES ? world_family_count() : MAX_FAMILIES;
    int on[MAX_FAMILIES];
    for (int f = 0; f < F; f++) on[f] = 1;
    if (families && strcmp(families, "all") != 0 && parse_families(families, on, F))
        return out_error("--families: '%s' is not a comma-separated list of families (rlhf world families)", families), 2;
    if (!model_path && !(model_path = default_model_path())) {
        out_error("--model is required (no built-in default model found)");
        return 2;
    }
    model_bundle b = {0}, rb = {0};
    if (model_bundle_load_merged(&b, model_path, &err)) return out_fail(&err);
    if (!b.tok) {
        model_bundle_free(&b);
        out_error("%s: the model has no tokenizer", model_path);
        return 1;
    }
    if (ref_path) {
        if (model_bundle_load_merged(&rb, ref_path, &err)) {
            model_bundle_free(&b);
            return out_fail(&err);
        }
        if (rb.m.config.vocab_size != b.m.config.vocab_size || rb.m.config.num_labels || b.m.config.num_labels) {
            out_error("--ref %s: the KL needs two language models over the same vocabulary (%d vs %d)", ref_path,
                      rb.m.config.vocab_size, b.m.config.vocab_size);
            model_bundle_free(&b), model_bundle_free(&rb);
            return 1;
        }
    }
    seq_forward pol = {0}, ref = {0};
    gen_packed *packed = NULL;
    int rc = gen_packed_make(&packed, &b.m, &err);
    dec.packed = packed;
    if (!rc && (stories > 0 || ref_path)) rc = seq_forward_init(&pol, &b.m, &err);
    if (!rc && ref_path) rc = seq_forward_init(&ref, &rb.m, &err);
    fam_stats st[MAX_FAMILIES];
    memset(st, 0, sizeof st);
    bleu_stats bleu = {0};
    const int translate = world_family_find("translate");
    double kl_sum = 0;
    long kl_tok = 0;
    long done = 0, total = 0;
    for (int f = 0; f < F; f++) total += on[f] ? n * per_prompt : 0;
    eval_answer *ans = calloc((size_t)EVAL_BATCH * per_prompt, sizeof *ans);
    if (!ans && !rc) rc = rlhf_errorf(&err, RLHF_ERR_NOMEM, "out of memory");
    for (int f = 0; f < F && !rc; f++) {
        if (!on[f]) continue;
        /* K solved examples of the same family from the train split (never the evaluated split) */
        world_item ex[16];
        prompt_example pe[16];
        for (long k = 0; k < shots && !rc; k++) {
            rc = world_item_make(f, WORLD_SPLIT_TRAIN, 1000000 + (uint64_t)k, &ex[k], &err);
            pe[k] = (prompt_example){ex[k].prompt, ex[k].answer};
        }
        const char *const *labels = world_family_labels(f);
        for (long i0 = 0; i0 < n && !rc; i0 += EVAL_BATCH) {
            const int nb = n - i0 < EVAL_BATCH ? (int)(n - i0) : EVAL_BATCH;
            world_item items[EVAL_BATCH];
            const char *prompts[EVAL_BATCH];
            for (int j = 0; j < nb && !rc; j++) {
                rc = world_item_make(f, split, (uint64_t)(i0 + j), &items[j], &err);
                prompts[j] = items[j].prompt;
            }
            if (rc || (rc = answers(&b, prompts, nb, pe, (int)shots, &dec, ans, &err))) break;
            for (int j = 0; j < nb && !rc; j++) {
                const world_item it = items[j];
                for (int q = 0; q < per_prompt && !rc; q++) {
                    const int k = j * per_prompt + q;
                    world_verdict v;
                    rc = world_verify(it.prompt, ans[k].text, &v, &err);
                    if (!rc && f == translate) bleu_add(&bleu, ans[k].text, it.answer);
                    if (!rc && ref_path) rc = answer_kl(&pol, &ref, &ans[k], &kl_sum, &kl_tok, &err);
                    if (rc) break;
                    fam_stats *s = &st[f];
                    s->n++;
                    s->correct += v.correct;
                    s->wrong += !v.correct;
                    s->rambling += !!(v.flaws & WORLD_FLAW_RAMBLING);
                    s->rude += !!(v.flaws & WORLD_FLAW_RUDE);
                    s->endless += ans[k].finish != GEN_FINISH_EOS;
                    s->unwanted += (v.flaws & (WORLD_FLAW_RAMBLING | WORLD_FLAW_RUDE)) || ans[k].finish != GEN_FINISH_EOS;
                    if (labels) {
                        int t = label_index(labels, v.expected), p = label_index(labels, v.got);
                        if (t >= 0 && t < MAX_LABELS) s->conf[t][p >= 0 && p < MAX_LABELS ? p : MAX_LABELS]++;
                    }
                    if (!json && (++done % 10 == 0 || done == total)) out_progress("eval: %ld/%ld answers", done, total);
                }
            }
            eval_answers_free(ans, nb * per_prompt);
        }
    }
    free(ans);
    double ppl = NAN;
    long ppl_tok = 0;
    if (!rc && stories > 0) {
        if (!json) out_progress("eval: perplexity on %ld stories", stories);
        rc = story_perplexity(&b, &pol, split, stories, &ppl, &ppl_tok, &err);
    }
    if (!json) out_progress_end();
    model_acts_free(&pol.a);
    model_acts_free(&ref.a);
    model_bundle_free(&rb);
    if (rc) {
        gen_packed_free(&packed);
        model_bundle_free(&b);
        return out_fail(&err);
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", model_path);
    cJSON_AddStringToObject(root, "split", split_name);
    cJSON_AddNumberToObject(root, "shots", (double)shots);
    cJSON_AddNumberToObject(root, "samples", (double)samples);
    if (samples > 0) cJSON_AddNumberToObject(root, "seed", (double)seed);
    cJSON *fams = cJSON_AddObjectToObject(root, "families");
    fam_stats all = {0};
    if (!json)
        out_printf("%-13s %5s %8s %7s %9s %6s %7s %9s\n", "family", "n", "accuracy", "wrong", "rambling", "rude", "no EOS",
                   "unwanted");
    for (int f = 0; f < F; f++) {
        if (!on[f]) continue;
        const fam_stats *s = &st[f];
        all.n += s->n, all.correct += s->correct, all.wrong += s->wrong, all.rambling += s->rambling;
        all.rude += s->rude, all.endless += s->endless, all.unwanted += s->unwanted;
        cJSON *o = cJSON_AddObjectToObject(fams, world_family_name(f));
        cJSON_AddNumberToObject(o, "n", s->n);
        cJSON_AddNumberToObject(o, "accuracy", rate(s->correct, s->n));
        cJSON_AddNumberToObject(o, "rambling", rate(s->rambling, s->n));
        cJSON_AddNumberToObject(o, "rude", rate(s->rude, s->n));
        cJSON_AddNumberToObject(o, "no_eos", rate(s->endless, s->n));
        cJSON_AddNumberToObject(o, "unwanted", rate(s->unwanted, s->n));
        if (!json)
            out_printf("%-13s %5d %7.1f%% %6.1f%% %8.1f%% %5.1f%% %6.1f%% %8.1f%%\n", world_family_name(f), s->n,
                       100 * rate(s->correct, s->n), 100 * rate(s->wrong, s->n), 100 * rate(s->rambling, s->n),
                       100 * rate(s->rude, s->n), 100 * rate(s->endless, s->n), 100 * rate(s->unwanted, s->n));
        const char *const *labels = world_family_labels(f);
        for (int l = 0; labels && labels[l] && l < MAX_LABELS; l++) {
            int tp = s->conf[l][l], fp = 0, fn = 0;
            for (int k = 0; k < MAX_LABELS; k++)
                if (k != l) fp += s->conf[k][l];
            for (int k = 0; k <= MAX_LABELS; k++)
                if (k != l) fn += s->conf[l][k];
            double p = tp + fp ? (double)tp / (tp + fp) : 0, r = tp + fn ? (double)tp / (tp + fn) : 0;
            double f1 = p + r > 0 ? 2 * p * r / (p + r) : 0;
            cJSON *lo = cJSON_AddObjectToObject(o, labels[l]);
            cJSON_AddNumberToObject(lo, "precision", p);
            cJSON_AddNumberToObject(lo, "recall", r);
            cJSON_AddNumberToObject(lo, "f1", f1);
            if (!json) out_printf("  %-11s precision %.2f recall %.2f F1 %.2f\n", labels[l], p, r, f1);
        }
        if (f == translate && bleu.sentences) {
            double prec[BLEU_MAX_ORDER], bp, score = bleu_score(&bleu, prec, &bp);
            cJSON *bo = cJSON_AddObjectToObject(o, "bleu");
            cJSON_AddNumberToObject(bo, "score", score);
            cJSON_AddItemToObject(bo, "precisions", cJSON_CreateDoubleArray(prec, BLEU_MAX_ORDER));
            cJSON_AddNumberToObject(bo, "brevity_penalty", bp);
            cJSON_AddNumberToObject(bo, "sentences", (double)bleu.sentences);
            cJSON_AddNumberToObject(root, "bleu", score);
            if (!json)
                out_printf("  BLEU-4      %.2f (corpus of %ld answers; precisions %.1f/%.1f/%.1f/%.1f, BP %.3f)\n", score,
                           bleu.sentences, prec[0], prec[1], prec[2], prec[3], bp);
        }
    }
    cJSON_AddNumberToObject(root, "accuracy", rate(all.correct, all.n));
    cJSON_AddNumberToObject(root, "wrong", rate(all.wrong, all.n));
    cJSON_AddNumberToObject(root, "rambling", rate(all.rambling, all.n));
    cJSON_AddNumberToObject(root, "rude", rate(all.rude, all.n));
    cJSON_AddNumberToObject(root, "no_eos", rate(all.endless, all.n));
    cJSON_AddNumberToObject(root, "unwanted", rate(all.unwanted, all.n));
    if (!json)
        out_printf("%-13s %5d %7.1f%% %6.1f%% %8.1f%% %5.1f%% %6.1f%% %8.1f%%\n", "all", all.n, 100 * rate(all.correct, all.n),
                   100 * rate(all.wrong, all.n), 100 * rate(all.rambling, all.n), 100 * rate(all.rude, all.n),
                   100 * rate(all.endless, all.n), 100 * rate(all.unwanted, all.n));
    if (stories > 0) {
        cJSON *po = cJSON_AddObjectToObject(root, "perplexity");
        cJSON_AddNumberToObject(po, "value", ppl);
        cJSON_AddNumberToObject(po, "stories", (double)stories);
        cJSON_AddNumberToObject(po, "tokens", (double)ppl_tok);
        if (!json) out_printf("perplexity    %.3f on %ld held-out stories (%ld tokens)\n", ppl, stories, ppl_tok);
    }
    double kl = kl_tok ? kl_sum / (double)kl_tok : 0;
    if (ref_path) {
        cJSON_AddNumberToObject(root, "kl", kl);
        cJSON_AddStringToObject(root, "ref", ref_path);
        if (!json) out_printf("KL to ref     %.4f nats per answer token (%ld tokens; ref %s)\n", kl, kl_tok, ref_path);
    }
    char *s = cJSON_PrintUnformatted(root);
    if (json && s) out_printf("%s\n", s);
    if (runs_db && s) { /* the result as a run of kind eval, its numbers as metrics at step 0 */
        store *db = NULL;
        store_open_params op = {0};
        store_run r = {0};
        r.kind = "eval";
        r.config_json = s;
        int64_t id = 0;
        rc = store_open_ex(&db, runs_db, &op, &err) || store_add_run(db, &r, &id, &err);
        const struct {
            const char *name;
            double v;
            int on;
        } m[] = {{"accuracy", rate(all.correct, all.n), 1},  {"unwanted", rate(all.unwanted, all.n), 1},
                 {"rambling", rate(all.rambling, all.n), 1}, {"rude", rate(all.rude, all.n), 1},
                 {"no_eos", rate(all.endless, all.n), 1},    {"bleu", bleu_score(&bleu, NULL, NULL), bleu.sentences > 0},
                 {"perplexity", ppl, stories > 0 && isfinite(ppl)}, {"kl", kl, ref_path != NULL}};
        for (size_t k = 0; !rc && k < sizeof m / sizeof m[0]; k++)
            if (m[k].on) rc = store_add_metric(db, id, 0, m[k].name, m[k].v, &err);
        for (int f = 0; !rc && f < F; f++) {
            char name[64];
            snprintf(name, sizeof name, "accuracy/%s", world_family_name(f));
            if (on[f]) rc = store_add_metric(db, id, 0, name, rate(st[f].correct, st[f].n), &err);
        }
        if (!rc) rc = store_finish_run(db, id, "done", NULL, &err);
        if (rc) rc = out_fail(&err);
        store_close(&db);
    }
    free(s);
    cJSON_Delete(root);
    gen_packed_free(&packed);
    model_bundle_free(&b);
    return rc;
}
