/* test_no_alloc.c — "no allocation inside a training step or a decoding step", checked.
 *
 * This executable is linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,
 * --wrap=aligned_alloc,--wrap=posix_memalign,--wrap=strdup, so every call our own code (the
 * engine library and this file) makes to them goes through the counters below; allocations
 * made inside shared libraries (libgomp's thread team, OpenBLAS's buffers) are theirs and are
 * not counted. Each check warms the path up once, then asserts that further steps allocate
 * nothing, for both model families:
 *   - train_step (forward, cross-entropy head, backward, clipped AdamW);
 *   - gen_decoder_prefill and gen_decoder_step (one and several sequences);
 *   - sampler_chain_sample with the full chain (penalties, temperature, top-k/p, min-p, draw);
 *   - gen_run: the number of allocations does not depend on max_tokens (per-run buffers only,
 *     never per token), for sampling with N candidates and for beam search. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/gen/generate.h"
#include "src/model/model.h"
#include "src/core/rng.h"
#include "src/gen/sampler.h"
#include "src/train/train.h"
#include "tests/test_util.h"

/* volatile: the compiler assumes malloc touches no program state, and would fold the counts */
static volatile long n_allocs;

void *__real_malloc(size_t n);
void *__real_calloc(size_t a, size_t b);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t al, size_t n);
int __real_posix_memalign(void **p, size_t al, size_t n);
char *__real_strdup(const char *s);

void *__wrap_malloc(size_t n) {
    n_allocs++;
    return __real_malloc(n);
}
void *__wrap_calloc(size_t a, size_t b) {
    n_allocs++;
    return __real_calloc(a, b);
}
void *__wrap_realloc(void *p, size_t n) {
    n_allocs++;
    return __real_realloc(p, n);
}
void *__wrap_aligned_alloc(size_t al, size_t n) {
    n_allocs++;
    return __real_aligned_alloc(al, n);
}
int __wrap_posix_memalign(void **p, size_t al, size_t n) {
    n_allocs++;
    return __real_posix_memalign(p, al, n);
}
char *__wrap_strdup(const char *s) {
    n_allocs++;
    return __real_strdup(s);
}

static const char *fam_name(model_family f) { return f == MODEL_FAMILY_GPT2 ? "gpt2" : "llama"; }

static int make_model(model *m, model_family fam) {
    model_config c;
    model_config_defaults(&c, fam);
    c.n_layers = 2;
    c.dim = 32;
    c.n_heads = 4;
    c.n_kv_heads = fam == MODEL_FAMILY_LLAMA ? 2 : 4;
    c.ffn_dim = fam == MODEL_FAMILY_GPT2 ? 128 : 96;
    c.vocab_size = 67;
    c.context = 64;
    rlhf_error err = {0};
    if (model_init(m, &c, &err)) {
        CHECK(0, "model_init: %s", err.msg);
        return -1;
    }
    rng_t r;
    rng_seed(&r, 11);
    model_init_random(m, &r);
    return 0;
}

static void check_train_step(model_family fam) {
    model m;
    if (make_model(&m, fam)) return;
    rlhf_error err = {0};
    train t;
    train_params p;
    train_params_defaults(&p);
    p.batch = 2;
    p.context = 16;
    p.accum = 2;
    CHECK(train_init(&t, &m, &p, &err) == 0, "train_init: %s", err.msg);
    int32_t in[2 * 2 * 16], tg[2 * 2 * 16];
    for (int i = 0; i < 64; i++) {
        in[i] = (i * 7 + 3) % 67;
        tg[i] = i % 5 == 0 ? -1 : (i * 11 + 1) % 67; /* some masked targets */
    }
    train_step_result res;
    CHECK(train_step(&t, in, tg, &res, &err) == 0, "warm-up step: %s", err.msg);
    const long before = n_allocs;
    for (int s = 0; s < 3; s++) CHECK(train_step(&t, in, tg, &res, &err) == 0, "step: %s", err.msg);
    CHECK(n_allocs == before, "%s: 3 training steps (accum 2) allocate nothing (%ld allocations)", fam_name(fam),
          n_allocs - before);
    train_free(&t);
    model_free(&m);
}

static void check_decoder(model_family fam) {
    model m;
    if (make_model(&m, fam)) return;
    rlhf_error err = {0};
    gen_decoder d;
    CHECK(gen_decoder_init(&d, &m, 4, 48, &err) == 0, "decoder: %s", err.msg);
    int32_t prompt[12];
    for (int i = 0; i < 12; i++) prompt[i] = (i * 5 + 1) % 67;
    CHECK(gen_decoder_prefill(&d, 0, prompt, 12, &err) == 0, "warm-up prefill: %s", err.msg);
    int seqs[4] = {0, 1, 2, 3};
    int32_t toks[4] = {1, 2, 3, 4};
    gen_decoder_copy(&d, 1, 0);
    CHECK(gen_decoder_step(&d, seqs, toks, 2, &err) == 0, "warm-up step: %s", err.msg);
    const long before = n_allocs;
    CHECK(gen_decoder_prefill(&d, 2, prompt, 12, &err) == 0, "prefill: %s", err.msg);
    gen_decoder_copy(&d, 3, 2);
    for (int s = 0; s < 10; s++) {
        CHECK(gen_decoder_step(&d, seqs, toks, 4, &err) == 0, "step: %s", err.msg);
        CHECK(gen_decoder_step(&d, &seqs[1], toks, 1, &err) == 0, "step: %s", err.msg);
    }
    CHECK(n_allocs == before, "%s: prefill, cache copies and 20 decoding steps allocate nothing (%ld allocations)",
          fam_name(fam), n_allocs - before);
    gen_decoder_free(&d);
    model_free(&m);
}

static void check_sampler(void) {
    rlhf_error err = {0};
    sampler_params sp;
    sampler_params_defaults(&sp);
    sp.temperature = 0.8f;
    sp.top_k = 40;
    sp.top_p = 0.9f;
    sp.min_p = 0.02f;
    sp.repeat_penalty = 1.1f;
    sp.presence_penalty = 0.2f;
    sp.frequency_penalty = 0.1f;
    sp.no_repeat_ngram_size = 3;
    sampler_chain c;
    const int V = 1000;
    CHECK(sampler_chain_init_params(&c, V, &sp, &err) == 0, "chain: %s", err.msg);
    float *logits = malloc((size_t)V * sizeof(float));
    int32_t hist[64];
    for (int i = 0; i < 64; i++) hist[i] = (i * 37) % V;
    rng_t r;
    rng_seed(&r, 5);
    for (int i = 0; i < V; i++) logits[i] = (float)((i * 7919) % 1000) / 100.0f;
    sampler_context ctx = {hist, 64, &r};
    (void)sampler_chain_sample(&c, logits, &ctx);
    const long before = n_allocs;
    for (int s = 0; s < 50; s++) {
        ctx.n_history = 16 + s % 48;
        (void)sampler_chain_sample(&c, logits, &ctx);
    }
    CHECK(n_allocs == before, "50 draws through the full sampler chain allocate nothing (%ld allocations)",
          n_allocs - before);
    free(logits);
    sampler_chain_free(&c);
}

static long run_allocs(const model *m, const gen_params *p) {
    int32_t prompt[5] = {1, 2, 3, 4, 5};
    gen_result r;
    rlhf_error err = {0};
    const long before = n_allocs;
    int rc = gen_run(m, NULL, prompt, 5, p, &r, &err);
    const long used = n_allocs - before;
    CHECK(rc == 0, "gen_run: %s", err.msg);
    if (rc == 0) gen_result_free(&r);
    return used;
}

static void check_gen_run(model_family fam) {
    model m;
    if (make_model(&m, fam)) return;
    gen_params p;
    gen_params_defaults(&p);
    p.n_eos = 0;
    p.n = 4;
    p.sampling.top_p = 0.9f;
    p.seed = 3;
    p.max_tokens = 4;
    const long short_run = run_allocs(&m, &p);
    p.max_tokens = 40;
    const long long_run = run_allocs(&m, &p);
    CHECK(short_run == long_run, "%s: sampling 4 candidates allocates per run, not per token (%ld for 4 tokens, %ld "
          "for 40)", fam_name(fam), short_run, long_run);
    gen_params_defaults(&p);
    p.n_eos = 0;
    p.strategy = GEN_STRATEGY_BEAM;
    p.num_beams = 3;
    p.n = 2;
    p.max_tokens = 4;
    const long beam_short = run_allocs(&m, &p);
    p.max_tokens = 40;
    const long beam_long = run_allocs(&m, &p);
    CHECK(beam_short == beam_long, "%s: beam search allocates per run, not per token (%ld for 4 tokens, %ld for 40)",
          fam_name(fam), beam_short, beam_long);
    model_free(&m);
}

int main(void) {
    /* the counters must see something, or the wrapping is not in effect and the test proves nothing */
    const long probe = n_allocs;
    void *volatile keep = malloc(16); /* volatile: the pair may not be optimised away */
    free(keep);
    CHECK(n_allocs == probe + 1, "malloc is wrapped (linker --wrap in effect)");
    /* and the engine's own calls are counted too (the library is linked statically) */
    model probe_model;
    const long before_init = n_allocs;
    if (make_model(&probe_model, MODEL_FAMILY_GPT2) == 0) model_free(&probe_model);
    CHECK(n_allocs > before_init, "model_init's allocations are counted (%ld)", n_allocs - before_init);
    for (int f = 0; f < 2; f++) {
        const model_family fam = f ? MODEL_FAMILY_LLAMA : MODEL_FAMILY_GPT2;
        check_train_step(fam);
        check_decoder(fam);
        check_gen_run(fam);
    }
    check_sampler();
    return test_finish("test_no_alloc");
}
