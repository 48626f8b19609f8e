/* test_generate.c — the KV-cache decoder and every decoding strategy.
 *
 * Properties checked:
 *  - stories260K (a real llama2.c model): greedy from [BOS] reproduces run.c's 200 ids exactly,
 *    the first 8 positions' logits match run.c's (atol 1e-4), beam search with 1 beam and
 *    top_k = 1 sampling both equal greedy;
 *  - the row-independent matmul gives each row the same bits whatever the batch, and matches a
 *    double-precision reference (rtol 1e-5);
 *  - a batched decoder step gives each sequence bit-for-bit the logits of a step alone, and
 *    each of N batched candidates equals the same seed's candidate generated alone, and
 *    gen_run_batch gives each of several prompts what gen_run gives it alone;
 *  - prefill in one batched pass equals decoding token by token (atol 1e-4: sgemm and the
 *    dot-product kernel sum in different orders);
 *  - beam search finds the best sequence on tiny random models where every sequence can be
 *    enumerated and scored by the training forward pass (model_forward), with and without EOS
 *    and length penalties;
 *  - context overflow is refused (or the prompt truncated on request), streaming callbacks and
 *    the stop flag interrupt cleanly, stop strings cut the text. */
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "src/core/fileio.h"
#include "src/gen/generate.h"
#include "src/formats/llama2c.h"
#include "src/model/model.h"
#include "tests/test_util.h"

/* ---- helpers ---- */

static int load_reference(int32_t *ids, int max, float (*logits)[512]) {
    char *json = NULL;
    size_t len = 0;
    rlhf_error err = {0};
    if (file_read_all(test_data_path("stories260K/greedy-from-bos.json"), &json, &len, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    cJSON *root = cJSON_Parse(json);
    free(json);
    cJSON *g = cJSON_GetObjectItem(root, "generated_ids");
    int n = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, g) if (n < max) ids[n++] = (int32_t)it->valueint;
    cJSON *lg = cJSON_GetObjectItem(root, "logits_first_positions");
    int p = 0;
    cJSON_ArrayForEach(it, lg) {
        int v = 0;
        cJSON *x;
        cJSON *row = cJSON_GetObjectItem(it, "logits"); /* {"pos", "token", "logits"} */
        cJSON_ArrayForEach(x, row) if (v < 512) logits[p][v++] = (float)x->valuedouble;
        if (++p == 8) break;
    }
    cJSON_Delete(root);
    return n;
}

static gen_params greedy_params(int max_tokens) {
    gen_params p;
    gen_params_defaults(&p);
    p.strategy = GEN_STRATEGY_GREEDY;
    p.max_tokens = max_tokens;
    p.n_eos = 0; /* run.c's reference runs all 200 steps */
    return p;
}

/* ---- stories260K ---- */

static void test_stories(model_rope_layout layout) {
    const char *name = layout == MODEL_ROPE_HALF ? "half-split" : "interleaved";
    model m;
    rlhf_error err = {0};
    int rc = llama2c_load(&m, test_data_path("stories260K/stories260K.bin"), layout, &err);
    CHECK(rc == 0, "load stories260K: %s", err.msg);
    if (rc) return;
    static int32_t ref[256];
    static float ref_logits[8][512];
    int n_ref = load_reference(ref, 256, ref_logits);
    CHECK(n_ref == 200, "reference has 200 ids (%d)", n_ref);

    /* logits at positions 0..7, token by token through the cache */
    gen_decoder d;
    CHECK(gen_decoder_init(&d, &m, 2, 64, &err) == 0, "decoder: %s", err.msg);
    int32_t seq[8] = {1};
    for (int i = 1; i < 8; i++) seq[i] = ref[i - 1];
    double worst = 0;
    CHECK(gen_decoder_prefill(&d, 0, seq, 1, &err) == 0, "prefill: %s", err.msg);
    for (int pos = 0; pos < 8; pos++) {
        if (pos > 0) {
            int s0 = 0;
            CHECK(gen_decoder_step(&d, &s0, &seq[pos], 1, &err) == 0, "step: %s", err.msg);
        }
        const float *lg = gen_decoder_logits(&d, 0);
        for (int v = 0; v < 512; v++) worst = fmax(worst, fabs((double)lg[v] - ref_logits[pos][v]));
    }
    CHECK(worst < 1e-4, "%s: logits at positions 0..7 match run.c within 1e-4 (max diff %g)", name, worst);
    /* the same 8 tokens prefilled in one batched pass give the last position's logits */
    CHECK(gen_decoder_prefill(&d, 1, seq, 8, &err) == 0, "prefill 8: %s", err.msg);
    double wp = 0;
    for (int v = 0; v < 512; v++) wp = fmax(wp, fabs((double)gen_decoder_logits(&d, 1)[v] - gen_decoder_logits(&d, 0)[v]));
    CHECK(wp < 1e-4, "%s: batched prefill (sgemm) == token-by-token decoding within 1e-4 (max diff %g)", name, wp);
    gen_decoder_free(&d);

    int32_t bos = 1;
    gen_params p = greedy_params(200);
    gen_result r;
    rc = gen_run(&m, NULL, &bos, 1, &p, &r, &err);
    CHECK(rc == 0, "greedy run: %s", err.msg);
    if (!rc) {
        CHECK(r.n == 1 && r.cands[0].n_ids == 200, "200 ids generated (%d)", r.cands[0].n_ids);
        int first_diff = -1;
        for (int i = 0; i < 200 && i < r.cands[0].n_ids; i++)
            if (r.cands[0].ids[i] != ref[i]) {
                first_diff = i;
                break;
            }
        CHECK(first_diff < 0, "%s: greedy from [1] reproduces greedy-from-bos.json (first difference at %d)", name,
              first_diff);
        CHECK(r.cands[0].finish == GEN_FINISH_LENGTH, "finish max_tokens");
        CHECK(r.cands[0].text == NULL, "no tokenizer, no text");
        double s = 0;
        for (int i = 0; i < r.cands[0].n_ids; i++) s += r.cands[0].logprobs[i];
        CHECK(fabs(s - r.cands[0].logprob) < 1e-9 && r.cands[0].logprob < 0, "logprob is the sum of per-token logprobs");
    }

    /* beam search with one beam == greedy */
    gen_params pb = greedy_params(200);
    pb.strategy = GEN_STRATEGY_BEAM;
    pb.num_beams = 1;
    gen_result rb;
    rc = gen_run(&m, NULL, &bos, 1, &pb, &rb, &err);
    CHECK(rc == 0, "beam run: %s", err.msg);
    if (!rc) {
        CHECK(rb.n == 1 && rb.cands[0].n_ids == 200 && memcmp(rb.cands[0].ids, ref, 200 * sizeof(int32_t)) == 0,
              "%s: beam search with 1 beam == greedy", name);
        CHECK(fabs(rb.cands[0].logprob - r.cands[0].logprob) < 1e-3, "beam logprob == greedy logprob (%g vs %g)",
              rb.cands[0].logprob, r.cands[0].logprob);
        gen_result_free(&rb);
    }

    /* top_k = 1 sampling == greedy, for any seed */
    gen_params ps;
    gen_params_defaults(&ps);
    ps.strategy = GEN_STRATEGY_SAMPLE;
    ps.sampling.top_k = 1;
    ps.seed = 12345;
    ps.max_tokens = 200;
    ps.n = 2;
    ps.n_eos = 0;
    gen_result rs;
    rc = gen_run(&m, NULL, &bos, 1, &ps, &rs, &err);
    CHECK(rc == 0, "top-k run: %s", err.msg);
    if (!rc) {
        for (int k = 0; k < rs.n; k++)
            CHECK(rs.cands[k].n_ids == 200 && memcmp(rs.cands[k].ids, ref, 200 * sizeof(int32_t)) == 0,
                  "%s: top_k=1 sampling == greedy (candidate %d)", name, k);
        gen_result_free(&rs);
    }
    gen_result_free(&r);
    model_free(&m);
}

/* Each of N batched candidates equals the same seed's candidate generated alone, also when
 * OpenMP offers more threads than there are candidates (each thread must get its own sampler
 * chain; sharing one corrupted its candidate list). */
/* stories260K with `threads` OpenMP threads (the old count in *saved); 0 on success. */
static int stories_with_threads(model *m, int threads, int *saved) {
    *saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    rlhf_error err = {0};
    if (llama2c_load(m, test_data_path("stories260K/stories260K.bin"), MODEL_ROPE_HALF, &err)) {
        CHECK(0, "load: %s", err.msg);
        omp_set_num_threads(*saved);
        return 1;
    }
    return 0;
}

static void test_candidates_reproducible(int N, int threads) {
    int saved_threads;
    model m;
    rlhf_error err = {0};
    if (stories_with_threads(&m, threads, &saved_threads)) return;
    int32_t prompt[3] = {1, 403, 407};
    gen_params p;
    gen_params_defaults(&p);
    p.sampling.temperature = 1.0f;
    p.sampling.top_p = 0.95f;
    p.sampling.repeat_penalty = 1.1f;
    p.sampling.top_k = 40;
    p.seed = 2024;
    p.n = N;
    p.max_tokens = 60;
    gen_result batch;
    int rc = gen_run(&m, NULL, prompt, 3, &p, &batch, &err);
    CHECK(rc == 0, "batched run: %s", err.msg);
    if (rc) {
        model_free(&m);
        omp_set_num_threads(saved_threads);
        return;
    }
    int lengths_differ = 0, texts_differ = 0;
    for (int k = 0; k < N; k++) {
        gen_params p1 = p;
        p1.n = 1;
        p1.first_index = k;
        gen_result one;
        rc = gen_run(&m, NULL, prompt, 3, &p1, &one, &err);
        CHECK(rc == 0, "alone run: %s", err.msg);
        if (rc) continue;
        const gen_candidate *a = &batch.cands[k], *b = &one.cands[0];
        CHECK(a->n_ids == b->n_ids && memcmp(a->ids, b->ids, (size_t)a->n_ids * sizeof(int32_t)) == 0,
              "candidate %d of a batch of %d (%d threads) == candidate %d alone (same ids)", k, N, threads, k);
        CHECK(a->n_ids == b->n_ids && memcmp(a->logprobs, b->logprobs, (size_t)a->n_ids * sizeof(float)) == 0,
              "candidate %d: per-token logprobs bit-identical", k);
        CHECK(a->finish == b->finish && a->index == k && b->index == k, "candidate %d: same finish and index", k);
        if (k > 0) {
            lengths_differ |= a->n_ids != batch.cands[0].n_ids;
            texts_differ |= a->n_ids != batch.cands[0].n_ids ||
                            memcmp(a->ids, batch.cands[0].ids, (size_t)a->n_ids * sizeof(int32_t)) != 0;
        }
        gen_result_free(&one);
    }
    CHECK(texts_differ, "the candidates are different from each other");
    (void)lengths_differ;
    gen_result_free(&batch);
    model_free(&m);
    omp_set_num_threads(saved_threads);
}

/* gen_run_batch: several prompts of different lengths decoded together (finished candidates
 * dropping out of the steps) give each prompt bit-for-bit the candidates gen_run gives it alone
 * with the same seed; an EOS id taken from one candidate makes lengths differ within the batch. */
static void test_run_batch(int N, int threads) {
    int saved_threads;
    model m;
    rlhf_error err = {0};
    if (stories_with_threads(&m, threads, &saved_threads)) return;
    const int32_t p0[3] = {1, 403, 407}, p1[7] = {1, 365, 301, 260, 403, 280, 407}, p2[1] = {1};
    const int32_t *prompts[3] = {p0, p1, p2};
    const int lens[3] = {3, 7, 1};
    const uint64_t seeds[3] = {7, 99, 12345};
    gen_params p;
    gen_params_defaults(&p);
    p.sampling.temperature = 1.0f;
    p.sampling.top_p = 0.9f;
    p.n = N;
    p.max_tokens = 40;
    p.n_eos = 0;
    gen_result alone[3] = {0}, batch[3] = {0};
    /* an id that prompt 0's first candidate draws early ends candidates at different steps */
    gen_params pe = p;
    pe.seed = seeds[0];
    int rc = gen_run(&m, NULL, p0, 3, &pe, &alone[0], &err);
    CHECK(rc == 0 && alone[0].cands[0].n_ids > 8, "probe run: %s", err.msg);
    if (rc) goto out;
    p.n_eos = 1;
    p.eos_ids[0] = alone[0].cands[0].ids[8];
    gen_result_free(&alone[0]);
    for (int j = 0; j < 3; j++) {
        gen_params pj = p;
        pj.seed = seeds[j];
        if ((rc = gen_run(&m, NULL, prompts[j], lens[j], &pj, &alone[j], &err))) break;
    }
    CHECK(rc == 0, "alone runs: %s", err.msg);
    if (rc) goto out;
    rc = gen_run_batch(&m, NULL, prompts, lens, 3, &p, seeds, batch, &err);
    CHECK(rc == 0, "batch run: %s", err.msg);
    if (rc) goto out;
    int same = 1, min_len = 1 << 30, max_len = 0;
    for (int j = 0; j < 3; j++) {
        same &= batch[j].n == N && batch[j].n_prompt == lens[j];
        for (int k = 0; k < N && same; k++) {
            const gen_candidate *a = &batch[j].cands[k], *b = &alone[j].cands[k];
            same &= a->n_ids == b->n_ids && a->finish == b->finish && a->index == b->index &&
                    memcmp(a->ids, b->ids, (size_t)a->n_ids * sizeof(int32_t)) == 0 &&
                    memcmp(a->logprobs, b->logprobs, (size_t)a->n_ids * sizeof(float)) == 0;
            if (a->n_ids < min_len) min_len = a->n_ids;
            if (a->n_ids > max_len) max_len = a->n_ids;
        }
    }
    CHECK(same, "gen_run_batch (3 prompts x %d, %d threads) == gen_run per prompt: ids, logprobs, finish bit-for-bit", N,
          threads);
    CHECK(min_len < max_len, "candidates of the batch end at different steps (%d..%d tokens)", min_len, max_len);
    gen_params pb = p;
    pb.strategy = GEN_STRATEGY_BEAM;
    pb.num_beams = 2;
    pb.n = 1;
    gen_result tmp[3];
    CHECK(gen_run_batch(&m, NULL, prompts, lens, 3, &pb, seeds, tmp, &err) == RLHF_ERR_UNSUPPORTED,
          "gen_run_batch refuses beam search");
    const int bad_lens[3] = {3, 0, 1};
    CHECK(gen_run_batch(&m, NULL, prompts, bad_lens, 3, &p, seeds, tmp, &err) == RLHF_ERR_INVALID &&
              strstr(err.msg, "prompt 1 of the batch") != NULL,
          "an empty prompt in a batch is an error naming it (%s)", err.msg);
out:
    for (int j = 0; j < 3; j++) {
        gen_result_free(&alone[j]);
        gen_result_free(&batch[j]);
    }
    model_free(&m);
    omp_set_num_threads(saved_threads);
}

/* ---- the matmul and the batched step ---- */

static void test_matmul_rows(void) {
    enum { M = 5, IN = 37, OUT = 70 };
    static float x[M * IN], w[IN * OUT], b[OUT], y[M * OUT], y1[OUT];
    rng_t r;
    rng_seed(&r, 5);
    for (int i = 0; i < M * IN; i++) x[i] = rng_normal(&r);
    for (int i = 0; i < IN * OUT; i++) w[i] = rng_normal(&r);
    for (int i = 0; i < OUT; i++) b[i] = rng_normal(&r);
    for (int in_out = 0; in_out <= 1; in_out++) {
        gen_matmul_rows(y, x, w, b, M, IN, OUT, in_out);
        int same = 1;
        double worst = 0;
        for (int row = 0; row < M; row++) {
            gen_matmul_rows(y1, x + row * IN, w, b, 1, IN, OUT, in_out);
            same &= memcmp(y1, y + row * OUT, sizeof y1) == 0;
            for (int j = 0; j < OUT; j++) {
                double s = b[j];
                for (int i = 0; i < IN; i++)
                    s += (double)x[row * IN + i] * (in_out ? w[i * OUT + j] : w[j * IN + i]);
                worst = fmax(worst, fabs(s - y[row * OUT + j]) / (1 + fabs(s)));
            }
        }
        CHECK(same, "matmul rows (%s): each row's bits do not depend on the batch", in_out ? "[in,out]" : "[out,in]");
        CHECK(worst < 1e-5, "matmul rows (%s) matches double reference (rel %g)", in_out ? "[in,out]" : "[out,in]", worst);
    }
}

static void make_random_model(model *m, model_family fam, int V, int C, int L, int NH, int NKV, int ctx, float scale,
                              uint64_t seed) {
    model_config c;
    model_config_defaults(&c, fam);
    c.n_layers = L;
    c.dim = C;
    c.n_heads = NH;
    c.n_kv_heads = NKV;
    c.ffn_dim = fam == MODEL_FAMILY_GPT2 ? 4 * C : 3 * C;
    c.vocab_size = V;
    c.context = ctx;
    rlhf_error err = {0};
    if (model_init(m, &c, &err)) {
        fprintf(stderr, "model_init: %s\n", err.msg);
        exit(1);
    }
    rng_t r;
    rng_seed(&r, seed);
    model_init_random(m, &r);
    /* sharpen the distributions so sequences have clearly different scores */
    for (size_t i = 0; i < m->n_floats; i++) m->params[i] *= scale;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].kind == MODEL_TENSOR_NORM)
            for (size_t k = 0; k < m->tensors[i].numel; k++) m->params[m->tensors[i].offset + k] = 1.0f;
}

static void test_batched_step(model_family fam) {
    model m;
    make_random_model(&m, fam, 97, 48, 2, 4, fam == MODEL_FAMILY_LLAMA ? 2 : 4, 64, 10.0f, 3);
    rlhf_error err = {0};
    gen_decoder a, b;
    CHECK(gen_decoder_init(&a, &m, 3, 32, &err) == 0, "init: %s", err.msg);
    CHECK(gen_decoder_init(&b, &m, 3, 32, &err) == 0, "init: %s", err.msg);
    int32_t p0[5] = {1, 2, 3, 4, 5}, p1[2] = {9, 8}, p2[7] = {7, 6, 5, 4, 3, 2, 1};
    for (gen_decoder *d = &a; d; d = d == &a ? &b : NULL) {
        gen_decoder_prefill(d, 0, p0, 5, &err);
        gen_decoder_prefill(d, 1, p1, 2, &err);
        gen_decoder_prefill(d, 2, p2, 7, &err);
    }
    int seqs[3] = {2, 0, 1};
    int32_t toks[3] = {11, 12, 13};
    CHECK(gen_decoder_step(&a, seqs, toks, 3, &err) == 0, "batched step: %s", err.msg);
    for (int i = 0; i < 3; i++) CHECK(gen_decoder_step(&b, &seqs[i], &toks[i], 1, &err) == 0, "single step");
    int same = memcmp(a.logits, b.logits, 3 * 97 * sizeof(float)) == 0;
    CHECK(same, "%s: batched step logits == single-sequence logits bit-for-bit", fam == MODEL_FAMILY_GPT2 ? "gpt2" : "llama");
    for (int i = 0; i < 3; i++) CHECK(a.len[i] == b.len[i], "lengths advance");
    /* overflow */
    int32_t many[40] = {0};
    CHECK(gen_decoder_prefill(&a, 0, many, 40, &err) == RLHF_ERR_INVALID && strstr(err.msg, "exceed"),
          "prefill past max_len refused: %s", err.msg);
    int32_t bad = 97;
    CHECK(gen_decoder_step(&a, seqs, &bad, 1, &err) == RLHF_ERR_INVALID && strstr(err.msg, "vocabulary"),
          "out-of-vocabulary token refused: %s", err.msg);
    /* step logits vs the training forward over the whole sequence */
    model_acts acts;
    CHECK(model_acts_init(&acts, &m.config, 1, 8, &err) == 0, "acts: %s", err.msg);
    int32_t full[6] = {1, 2, 3, 4, 5, 12};
    CHECK(model_forward(&m, &acts, full, 1, 6, &err) == 0, "forward: %s", err.msg);
    double worst = 0;
    for (int v = 0; v < 97; v++) worst = fmax(worst, fabs((double)acts.logits[5 * 97 + v] - a.logits[0 * 97 + v]));
    CHECK(worst < 1e-3, "decoder step == model_forward at the same position (max diff %g, atol 1e-3)", worst);
    model_acts_free(&acts);
    gen_decoder_free(&a);
    gen_decoder_free(&b);
    gen_decoder_free(&b);
    model_free(&m);
}

/* ---- exhaustive beam search ---- */

/* Sum of log-probabilities of seq[0..n) after the prompt, via the training forward pass. */
static double score_sequence(const model *m, model_acts *acts, const int32_t *prompt, int np, const int32_t *seq,
                             int n) {
    int32_t full[16];
    memcpy(full, prompt, (size_t)np * sizeof *full);
    memcpy(full + np, seq, (size_t)n * sizeof *full);
    rlhf_error err = {0};
    if (model_forward(m, acts, full, 1, np + n, &err)) {
        fprintf(stderr, "forward: %s\n", err.msg);
        exit(1);
    }
    const int V = m->config.vocab_size;
    double s = 0;
    for (int i = 0; i < n; i++) s += sampler_logprob(acts->logits + (size_t)(np - 1 + i) * V, V, seq[i]);
    return s;
}

static void test_beam_exhaustive(model_family fam, int32_t eos, float length_penalty, int beams) {
    enum { V = 5, T = 3 };
    model m;
    make_random_model(&m, fam, V, 16, 1, 2, 2, 16, 30.0f, 77 + (uint64_t)fam);
    rlhf_error err = {0};
    model_acts acts;
    CHECK(model_acts_init(&acts, &m.config, 1, 16, &err) == 0, "acts");
    int32_t prompt[2] = {0, 1};
    /* enumerate: every sequence of length T without EOS, and every EOS-ended shorter one */
    double best = -INFINITY, second = -INFINITY;
    int32_t best_seq[T];
    int best_len = 0;
    for (int code = 0; code < V * V * V; code++) {
        int32_t s[T] = {code % V, (code / V) % V, code / (V * V)};
        int len = T;
        for (int i = 0; i < T; i++)
            if (s[i] == eos) {
                len = i + 1;
                break;
            }
        /* count each distinct sequence once: trailing positions after EOS must be 0 */
        int canonical = 1;
        for (int i = len; i < T; i++) canonical &= s[i] == 0;
        if (!canonical) continue;
        double sc = score_sequence(&m, &acts, prompt, 2, s, len) / pow(len, length_penalty);
        if (sc > best) {
            second = best;
            best = sc;
            memcpy(best_seq, s, sizeof s);
            best_len = len;
        } else if (sc > second) {
            second = sc;
        }
    }
    gen_params p;
    gen_params_defaults(&p);
    p.strategy = GEN_STRATEGY_BEAM;
    p.num_beams = beams;
    p.n = 2;
    p.max_tokens = T;
    p.length_penalty = length_penalty;
    p.n_eos = eos >= 0 ? 1 : 0;
    p.eos_ids[0] = eos;
    gen_result r;
    int rc = gen_run(&m, NULL, prompt, 2, &p, &r, &err);
    CHECK(rc == 0, "beam: %s", err.msg);
    if (!rc) {
        CHECK(best - second > 1e-4, "test model separates the best sequence (gap %g)", best - second);
        CHECK(r.cands[0].n_ids == best_len && memcmp(r.cands[0].ids, best_seq, (size_t)best_len * sizeof(int32_t)) == 0,
              "%s beam search (beams %d, eos %d, length_penalty %g) returns the enumerated best sequence",
              fam == MODEL_FAMILY_GPT2 ? "gpt2" : "llama", beams, eos, (double)length_penalty);
        CHECK(fabs(r.cands[0].score - best) < 1e-4, "beam score %g == enumerated score %g", r.cands[0].score, best);
        CHECK(r.n == 2 && r.cands[1].score <= r.cands[0].score && fabs(r.cands[1].score - second) < 1e-4,
              "second beam is the second-best sequence (%g vs %g)", r.n == 2 ? r.cands[1].score : 0.0, second);
        gen_result_free(&r);
    }
    model_acts_free(&acts);
    model_free(&m);
}

static void test_beam_vs_greedy_small(void) {
    model m;
    make_random_model(&m, MODEL_FAMILY_GPT2, 50, 32, 2, 4, 4, 64, 8.0f, 9);
    int32_t prompt[3] = {3, 1, 4};
    rlhf_error err = {0};
    gen_params g = greedy_params(20);
    gen_params b = g;
    b.strategy = GEN_STRATEGY_BEAM;
    b.num_beams = 1;
    gen_result rg, rb;
    CHECK(gen_run(&m, NULL, prompt, 3, &g, &rg, &err) == 0, "greedy: %s", err.msg);
    CHECK(gen_run(&m, NULL, prompt, 3, &b, &rb, &err) == 0, "beam: %s", err.msg);
    CHECK(rg.cands[0].n_ids == rb.cands[0].n_ids &&
              memcmp(rg.cands[0].ids, rb.cands[0].ids, (size_t)rg.cands[0].n_ids * sizeof(int32_t)) == 0,
          "gpt2: beam with 1 beam == greedy");
    gen_result_free(&rg);
    gen_result_free(&rb);
    /* no_repeat_ngram_size 2: no bigram repeats in prompt + generated */
    g.sampling.no_repeat_ngram_size = 2;
    b.sampling.no_repeat_ngram_size = 2;
    b.num_beams = 3;
    for (int s = 0; s < 2; s++) {
        gen_result r;
        CHECK(gen_run(&m, NULL, prompt, 3, s ? &b : &g, &r, &err) == 0, "run: %s", err.msg);
        int32_t all[32];
        memcpy(all, prompt, sizeof prompt);
        memcpy(all + 3, r.cands[0].ids, (size_t)r.cands[0].n_ids * sizeof(int32_t));
        int n = 3 + r.cands[0].n_ids, rep = 0;
        for (int i = 0; i + 1 < n; i++)
            for (int j = i + 1; j + 1 < n; j++) rep |= all[i] == all[j] && all[i + 1] == all[j + 1];
        CHECK(!rep, "%s: no_repeat_ngram_size 2 leaves no repeated bigram", s ? "beam" : "greedy");
        gen_result_free(&r);
    }
    model_free(&m);
}

/* ---- stopping ---- */

static int stop_after_5(void *user, int cand, int32_t id, const char *text, size_t len, float lp) {
    (void)cand, (void)id, (void)text, (void)len, (void)lp;
    int *n = user;
    return ++*n >= 5;
}

typedef struct {
    char buf[4096];
    size_t n;
    int calls;
} collect;

static int collect_text(void *user, int cand, int32_t id, const char *text, size_t len, float lp) {
    (void)cand, (void)id, (void)lp;
    collect *c = user;
    if (text && c->n + len < sizeof c->buf) {
        memcpy(c->buf + c->n, text, len);
        c->n += len;
    }
    c->calls++;
    return 0;
}

static void test_stopping(void) {
    model m;
    make_random_model(&m, MODEL_FAMILY_LLAMA, 128, 32, 1, 4, 4, 64, 4.0f, 21); /* ASCII ids only */
    rlhf_error err = {0};
    int32_t prompt[4] = {72, 105, 33, 32};
    /* overflow: refused, or truncated from the left on request */
    gen_params p = greedy_params(62);
    gen_result r;
    CHECK(gen_run(&m, NULL, prompt, 4, &p, &r, &err) == RLHF_ERR_INVALID && strstr(err.msg, "context"),
          "prompt + max_tokens over the context is refused: %s", err.msg);
    p.truncate_prompt = 1;
    CHECK(gen_run(&m, NULL, prompt, 4, &p, &r, &err) == 0 && r.n_dropped == 2 && r.n_prompt == 2,
          "left truncation drops the oldest prompt tokens");
    gen_result_free(&r);

    /* callback returning nonzero stops with "interrupted" */
    int count = 0;
    p = greedy_params(30);
    p.on_token = stop_after_5;
    p.user = &count;
    CHECK(gen_run(&m, NULL, prompt, 4, &p, &r, &err) == 0, "run");
    CHECK(r.cands[0].n_ids == 5 && r.cands[0].finish == GEN_FINISH_INTERRUPTED,
          "callback stop: 5 tokens, finish interrupted (%d, %s)", r.cands[0].n_ids, gen_finish_name(r.cands[0].finish));
    gen_result_free(&r);
    volatile sig_atomic_t flag = 1;
    p = greedy_params(30);
    p.stop_flag = &flag;
    p.n = 3;
    CHECK(gen_run(&m, NULL, prompt, 4, &p, &r, &err) == 0, "run");
    CHECK(r.cands[0].n_ids == 0 && r.cands[2].finish == GEN_FINISH_INTERRUPTED, "stop flag set: interrupted at once");
    gen_result_free(&r);
    {
        /* beam search refuses stop strings rather than ignoring them */
        gen_params pb;
        gen_params_defaults(&pb);
        pb.strategy = GEN_STRATEGY_BEAM;
        pb.num_beams = 2;
        pb.max_tokens = 4;
        const char *stops[1] = {"x"};
        pb.stop = stops;
        pb.n_stop = 1;
        CHECK(gen_run(&m, NULL, prompt, 4, &pb, &r, &err) == RLHF_ERR_UNSUPPORTED && strstr(err.msg, "beam"),
              "beam search with a stop string is refused: %s", err.msg);
    }

    /* stop strings, with a byte tokenizer: the text is cut before the first occurrence, and the
     * streamed text equals the final text */
    tokenizer *tok = NULL;
    CHECK(tok_new_bytes(&tok, &err) == 0, "byte tokenizer: %s", err.msg);
    p = greedy_params(40);
    CHECK(gen_run(&m, tok, prompt, 4, &p, &r, &err) == 0, "run: %s", err.msg);
    CHECK(r.cands[0].text && r.cands[0].text_len > 0, "text decoded");
    if (r.cands[0].text_len >= 12) {
        char stop[3] = {r.cands[0].text[10], r.cands[0].text[11], 0};
        const char *first = strstr(r.cands[0].text, stop);
        size_t cut = (size_t)(first - r.cands[0].text);
        gen_result r2;
        collect col = {{0}, 0, 0};
        gen_params p2 = p;
        const char *stops[2] = {"\x01\x02never", stop};
        p2.stop = stops;
        p2.n_stop = 2;
        p2.on_token = collect_text;
        p2.user = &col;
        CHECK(gen_run(&m, tok, prompt, 4, &p2, &r2, &err) == 0, "run: %s", err.msg);
        CHECK(r2.cands[0].finish == GEN_FINISH_STOP && r2.cands[0].text_stop == cut &&
                  memcmp(r2.cands[0].text, r.cands[0].text, cut) == 0,
              "stop string found at its first occurrence (%zu vs %zu)", r2.cands[0].text_stop, cut);
        /* the candidate ends with the token completing the stop string; text is its ids' text */
        CHECK(r2.cands[0].text_len == cut + strlen(stop) && r2.cands[0].n_ids == (int)(cut + strlen(stop)) &&
                  memcmp(r2.cands[0].text + cut, stop, strlen(stop)) == 0,
              "the stop string is part of the candidate (%zu bytes, %d ids)", r2.cands[0].text_len, r2.cands[0].n_ids);
        CHECK(col.n == r2.cands[0].text_stop && memcmp(col.buf, r2.cands[0].text, col.n) == 0,
              "streamed text == the text before the stop string (stop string never shown)");
        CHECK(col.calls == r2.cands[0].n_ids, "one callback per token");
        gen_result_free(&r2);
    }
    gen_result_free(&r);
    /* EOS ends a candidate and is the last id; it is not in the text */
    p = greedy_params(40);
    CHECK(gen_run(&m, tok, prompt, 4, &p, &r, &err) == 0, "run");
    int32_t e = r.cands[0].ids[3];
    gen_result_free(&r);
    p.n_eos = 1;
    p.eos_ids[0] = e;
    CHECK(gen_run(&m, tok, prompt, 4, &p, &r, &err) == 0, "run");
    int first = 0;
    while (r.cands[0].ids[first] != e) first++;
    CHECK(r.cands[0].finish == GEN_FINISH_EOS && r.cands[0].n_ids == first + 1 && r.cands[0].text_len == (size_t)first,
          "eos ends the candidate (%s, %d ids)", gen_finish_name(r.cands[0].finish), r.cands[0].n_ids);
    gen_result_free(&r);
    tok_close(&tok);
    model_free(&m);
}

int main(void) {
    test_matmul_rows();
    test_batched_step(MODEL_FAMILY_LLAMA);
    test_batched_step(MODEL_FAMILY_GPT2);
    test_stories(MODEL_ROPE_INTERLEAVED);
    test_stories(MODEL_ROPE_HALF);
    test_candidates_reproducible(4, 2);
    test_candidates_reproducible(2, 8);
    test_run_batch(4, 2);
    test_run_batch(1, 1);
    test_beam_exhaustive(MODEL_FAMILY_LLAMA, -1, 1.0f, 25);
    test_beam_exhaustive(MODEL_FAMILY_GPT2, -1, 1.0f, 25);
    test_beam_exhaustive(MODEL_FAMILY_LLAMA, 4, 0.0f, 125);
    test_beam_exhaustive(MODEL_FAMILY_GPT2, 4, 1.0f, 125);
    test_beam_exhaustive(MODEL_FAMILY_LLAMA, 2, 2.0f, 125);
    test_beam_vs_greedy_small();
    test_stopping();
    return test_finish("generate");
}
