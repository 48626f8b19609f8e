/* test_gen_records.c — a generated candidate agrees with itself: its ids, per-token
 * log-probabilities, total log-probability and text describe the same tokens, for every finish
 * reason (eos, stop, max_tokens, interrupted), every strategy (greedy, sample, beam) and several
 * candidates from one pass. Two real tokenizers (GPT-2's byte-level BPE, a SentencePiece-style
 * BPE of 32k pieces) on tiny random models:
 *  - text == the streaming decode of ids (without a final EOS), which equals tok_decode;
 *  - logprob == sum(token_logprobs) and mean_logprob == logprob / n_ids;
 *  - each token's log-probability is the training forward pass's log-softmax at that position
 *    (within 1e-4: the decoder's kernels differ from the training ones);
 *  - a stop string is part of the candidate: text_stop marks where it begins, the text before it
 *    holds no stop string, and the streamed text is exactly text[0..text_stop);
 *  - a model whose embedding has more rows than the tokenizer has tokens (GPT-2 padded to 50304,
 *    padding rows made the likeliest) never generates a padding id. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/gen/generate.h"
#include "src/gen/sampler.h"
#include "src/model/model.h"
#include "src/tok/tokenizer.h"
#include "tests/test_util.h"

static rlhf_error g_err;

typedef struct {
    char buf[1 << 14];
    size_t n;
    int calls, limit; /* limit > 0: ask to stop after that many tokens */
} stream_log;

static int on_token(void *user, int candidate, int32_t id, const char *text, size_t len, float lp) {
    (void)candidate;
    (void)id;
    (void)lp;
    stream_log *s = user;
    if (text && s->n + len < sizeof s->buf) {
        memcpy(s->buf + s->n, text, len);
        s->n += len;
    }
    s->calls++;
    return s->limit > 0 && s->calls >= s->limit;
}

static void make_model(model *m, model_family fam, int V, uint64_t seed) {
    model_config c;
    model_config_defaults(&c, fam);
    c.n_layers = 2;
    c.dim = 32;
    c.n_heads = 4;
    c.n_kv_heads = fam == MODEL_FAMILY_LLAMA ? 2 : 4; /* grouped-query attention for Llama */
    c.ffn_dim = fam == MODEL_FAMILY_GPT2 ? 128 : 96;
    c.vocab_size = V;
    c.context = 96;
    if (model_init(m, &c, &g_err)) {
        fprintf(stderr, "model_init: %s\n", g_err.msg);
        exit(1);
    }
    rng_t r;
    rng_seed(&r, seed);
    model_init_random(m, &r);
    /* sharper distributions than the init gives, so strategies differ and beams separate */
    for (size_t i = 0; i < m->n_floats; i++) m->params[i] *= 4.0f;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].kind == MODEL_TENSOR_NORM)
            for (size_t k = 0; k < m->tensors[i].numel; k++) m->params[m->tensors[i].offset + k] = 1.0f;
}

/* Streaming decode of ids[0..n) as generation does it (mid-sequence: after prompt text). */
static char *decode_ids(const tokenizer *t, const int32_t *ids, int n, size_t *len) {
    tok_stream ts;
    char *out = calloc(1, (size_t)n * 64 + 64);
    size_t o = 0;
    const char *piece;
    size_t plen;
    if (!out || tok_stream_init(&ts, t, TOK_STREAM_MID_SEQUENCE, &g_err)) exit(1);
    for (int i = 0; i <= n; i++) {
        int rc = i < n ? tok_stream_push(&ts, ids[i], &piece, &plen, &g_err) : tok_stream_flush(&ts, &piece, &plen, &g_err);
        if (rc) exit(1);
        memcpy(out + o, piece, plen);
        o += plen;
    }
    tok_stream_free(&ts);
    *len = o;
    return out;
}

typedef struct {
    const char *name;
    const model *m;
    const tokenizer *tok;
    tok_ids prompt;
    int n_valid;         /* the tokenizer's vocabulary: ids >= n_valid are padding */
    model_acts acts;
    int finishes[3][5];  /* [strategy][finish] seen */
} world;

/* Every invariant of one result. stops: the stop strings asked for. */
static void check_result(world *w, const gen_params *p, const gen_result *r, const stream_log *slog) {
    const int V = w->m->config.vocab_size;
    for (int k = 0; k < r->n; k++) {
        const gen_candidate *c = &r->cands[k];
        const char *what = gen_strategy_name(p->strategy);
        w->finishes[p->strategy][c->finish]++;
        double sum = 0;
        int pad = 0;
        for (int i = 0; i < c->n_ids; i++) {
            sum += c->logprobs[i];
            pad += c->ids[i] >= w->n_valid;
        }
        CHECK(pad == 0, "%s %s cand %d: %d padding ids generated", w->name, what, k, pad);
        CHECK(fabs(sum - c->logprob) <= 1e-9 * (1 + fabs(sum)), "%s %s cand %d: logprob %.9g == sum %.9g", w->name,
              what, k, c->logprob, sum);
        CHECK(c->n_ids == 0 || fabs(c->mean_logprob * c->n_ids - c->logprob) <= 1e-9 * (1 + fabs(sum)),
              "%s %s cand %d: mean_logprob * n == logprob", w->name, what, k);
        int n_text = c->n_ids - (c->finish == GEN_FINISH_EOS ? 1 : 0);
        size_t dl;
        char *dec = decode_ids(w->tok, c->ids, n_text, &dl);
        CHECK(c->text && dl == c->text_len && memcmp(dec, c->text, dl) == 0,
              "%s %s cand %d (%s): text == decode(ids): \"%s\" vs \"%s\"", w->name, what, k, gen_finish_name(c->finish),
              c->text ? c->text : "(null)", dec);
        /* the same text from tok_decode of prompt + ids, past the prompt's text */
        size_t np = w->prompt.n, pl, fl;
        int32_t *full = malloc((np + (size_t)n_text + 1) * sizeof *full);
        memcpy(full, w->prompt.ids, np * sizeof *full);
        memcpy(full + np, c->ids, (size_t)n_text * sizeof *full);
        char *ptext = NULL, *ftext = NULL;
        if (!tok_decode(w->tok, full, np, &ptext, &pl, &g_err) &&
            !tok_decode(w->tok, full, np + (size_t)n_text, &ftext, &fl, &g_err) && strstr(ptext, "\xef\xbf\xbd") == NULL &&
            fl >= pl && memcmp(ftext, ptext, pl) == 0)
            CHECK(fl - pl == c->text_len && memcmp(ftext + pl, c->text, c->text_len) == 0,
                  "%s %s cand %d: text == tok_decode(prompt + ids) minus the prompt's text", w->name, what, k);
        free(ptext);
        free(ftext);
        if (c->finish == GEN_FINISH_STOP) {
            int starts = 0, before = 0;
            for (int s = 0; s < p->n_stop; s++) {
                size_t sl = strlen(p->stop[s]);
                starts |= c->text_stop + sl <= c->text_len && memcmp(c->text + c->text_stop, p->stop[s], sl) == 0;
                before |= memmem(c->text, c->text_stop, p->stop[s], sl) != NULL;
            }
            CHECK(starts && !before, "%s %s cand %d: a stop string begins at text_stop %zu and none before", w->name,
                  what, k, c->text_stop);
        } else {
            CHECK(c->text_stop == c->text_len, "%s %s cand %d: text_stop == text_len without a stop string", w->name,
                  what, k);
        }
        if (slog && r->n == 1)
            CHECK(slog->n == c->text_stop && memcmp(slog->buf, c->text, slog->n) == 0,
                  "%s %s: streamed text == text[0..text_stop) (%zu vs %zu bytes)", w->name, what, slog->n, c->text_stop);
        /* each token's log-probability against the training forward pass (padding masked) */
        int T = (int)np + c->n_ids;
        memcpy(full, w->prompt.ids, np * sizeof *full);
        full = realloc(full, (size_t)T * sizeof *full);
        memcpy(full + np, c->ids, (size_t)c->n_ids * sizeof *full);
        if (model_forward(w->m, &w->acts, full, 1, T, &g_err)) exit(1);
        double worst = 0;
        for (int i = 0; i < c->n_ids; i++) {
            const float *lg = w->acts.logits + (size_t)(np - 1 + (size_t)i) * V;
            double mx = -INFINITY, z = 0;
            for (int v = 0; v < w->n_valid; v++) mx = fmax(mx, lg[v]);
            for (int v = 0; v < w->n_valid; v++) z += exp(lg[v] - mx);
            double ref = lg[c->ids[i]] - mx - log(z);
            worst = fmax(worst, fabs(ref - c->logprobs[i]) / (1 + fabs(ref)));
        }
        CHECK(worst <= 1e-4, "%s %s cand %d: token logprobs == training forward's log-softmax (worst %.3g)", w->name,
              what, k, worst);
        free(full);
        free(dec);
    }
}

static gen_params base_params(gen_strategy s, int n, int max_tokens) {
    gen_params p;
    gen_params_defaults(&p);
    p.strategy = s;
    p.n = n;
    p.max_tokens = max_tokens;
    p.seed = 11;
    if (s == GEN_STRATEGY_SAMPLE) {
        p.sampling.temperature = 1.0f;
        p.sampling.top_k = 50;
    }
    if (s == GEN_STRATEGY_BEAM) p.num_beams = 3;
    return p;
}

static void run_checked(world *w, gen_params *p, gen_result *r, stream_log *log) {
    if (log && p->strategy != GEN_STRATEGY_BEAM) {
        p->on_token = on_token;
        p->user = log;
    }
    CHECK(gen_run(w->m, w->tok, w->prompt.ids, (int)w->prompt.n, p, r, &g_err) == 0, "%s gen_run: %s", w->name,
          g_err.msg);
    check_result(w, p, r, p->on_token ? log : NULL);
}

static void exercise(world *w) {
    const gen_strategy strategies[3] = {GEN_STRATEGY_GREEDY, GEN_STRATEGY_SAMPLE, GEN_STRATEGY_BEAM};
    for (int si = 0; si < 3; si++) {
        gen_strategy s = strategies[si];
        int n = s == GEN_STRATEGY_GREEDY ? 1 : s == GEN_STRATEGY_SAMPLE ? 3 : 2;
        /* max_tokens (no EOS, which a random model rarely draws) */
        gen_params p = base_params(s, n, 24);
        p.n_eos = 0;
        gen_result free_run;
        stream_log log = {0};
        run_checked(w, &p, &free_run, &log);
        /* eos: the third token of candidate 0 made an end-of-sequence id */
        p = base_params(s, n, 24);
        p.n_eos = 1;
        p.eos_ids[0] = free_run.cands[0].ids[2];
        gen_result r;
        memset(&log, 0, sizeof log);
        run_checked(w, &p, &r, &log);
        if (s != GEN_STRATEGY_BEAM)
            CHECK(r.cands[0].finish == GEN_FINISH_EOS && r.cands[0].n_ids <= 3, "%s %s: ends at the chosen EOS id",
                  w->name, gen_strategy_name(s));
        gen_result_free(&r);
        if (s != GEN_STRATEGY_BEAM) {
            /* stop: two bytes from the middle of candidate 0's text (and one that never occurs) */
            const gen_candidate *c0 = &free_run.cands[0];
            if (c0->text_len >= 8) {
                char stop[3] = {c0->text[c0->text_len / 2], c0->text[c0->text_len / 2 + 1], 0};
                const char *stops[2] = {"\x01never\x02", stop};
                p = base_params(s, 1, 24);
                p.n_eos = 0;
                p.stop = stops;
                p.n_stop = 2;
                memset(&log, 0, sizeof log);
                run_checked(w, &p, &r, &log);
                CHECK(r.cands[0].finish == GEN_FINISH_STOP, "%s %s: stops at \"%s\"", w->name, gen_strategy_name(s),
                      stop);
                gen_result_free(&r);
                p.n = n; /* several candidates with stop strings: invariants only */
                p.on_token = NULL;
                run_checked(w, &p, &r, NULL);
                gen_result_free(&r);
            }
            /* interrupted by the callback after 5 tokens */
            p = base_params(s, 1, 24);
            p.n_eos = 0;
            memset(&log, 0, sizeof log);
            log.limit = 5;
            run_checked(w, &p, &r, &log);
            CHECK(r.cands[0].finish == GEN_FINISH_INTERRUPTED && r.cands[0].n_ids == 5, "%s %s: interrupted after 5",
                  w->name, gen_strategy_name(s));
            gen_result_free(&r);
        }
        gen_result_free(&free_run);
    }
    for (int si = 0; si < 3; si++) {
        const int *f = w->finishes[strategies[si]];
        if (strategies[si] == GEN_STRATEGY_BEAM)
            CHECK(f[GEN_FINISH_LENGTH] + f[GEN_FINISH_EOS] > 0, "%s beam: candidates checked", w->name);
        else
            CHECK(f[GEN_FINISH_EOS] && f[GEN_FINISH_STOP] && f[GEN_FINISH_LENGTH] && f[GEN_FINISH_INTERRUPTED],
                  "%s %s: every finish reason was checked (eos %d stop %d max_tokens %d interrupted %d)", w->name,
                  gen_strategy_name(strategies[si]), f[GEN_FINISH_EOS], f[GEN_FINISH_STOP], f[GEN_FINISH_LENGTH],
                  f[GEN_FINISH_INTERRUPTED]);
    }
}

static void run_world(const char *name, model_family fam, const char *tok_path, int extra_rows, const char *prompt) {
    tokenizer *tok = NULL;
    if (tok_load(&tok, test_data_path(tok_path), &g_err)) {
        CHECK(0, "load %s: %s", tok_path, g_err.msg);
        return;
    }
    world w = {0};
    w.name = name;
    w.tok = tok;
    w.n_valid = tok_vocab_size(tok);
    model m;
    make_model(&m, fam, w.n_valid + extra_rows, 5);
    if (extra_rows > 0) {
        /* padding rows the likeliest of all: an unmasked decoder would pick them at once */
        float *emb = m.w.lm_head;
        for (int v = w.n_valid; v < w.n_valid + extra_rows; v++)
            for (int i = 0; i < m.config.dim; i++) emb[(size_t)v * m.config.dim + i] *= 50.0f;
    }
    w.m = &m;
    if (tok_encode(tok, prompt, strlen(prompt), 0, &w.prompt, &g_err) || model_acts_init(&w.acts, &m.config, 1, 96, &g_err)) {
        CHECK(0, "%s setup: %s", name, g_err.msg);
        return;
    }
    exercise(&w);
    model_acts_free(&w.acts);
    tok_ids_free(&w.prompt);
    model_free(&m);
    tok_close(&tok);
}

int main(void) {
    /* GPT-2's 50257 tokens in an embedding padded to 50304 rows (as nanoGPT pads it) */
    run_world("gpt2", MODEL_FAMILY_GPT2, "gpt2/encoder.json", 47, "The weather today is");
    run_world("llama sp-32k", MODEL_FAMILY_LLAMA, "sp-bpe-32k/tokenizer.json", 0, "Once upon a time, there");
    return test_finish("gen records");
}
