/* test_model_layout.c — the parameter layout: Hugging Face names and shapes, fused groups
 * contiguous, parameter counts of known models, deterministic initialisation. */
#include "src/model/model.h"
#include "tests/test_util.h"

static void check_gpt2_small(void) {
    model_config c;
    model_config_defaults(&c, MODEL_FAMILY_GPT2);
    c.n_layers = 12; c.dim = 768; c.n_heads = 12; c.n_kv_heads = 12; c.ffn_dim = 3072;
    c.vocab_size = 50257; c.context = 1024;
    model m;
    rlhf_error err = {0};
    CHECK(model_init(&m, &c, &err) == 0, "gpt2 init: %s", err.msg);
    /* GPT-2 small has 124,439,808 parameters (tied head) */
    CHECK(m.n_params == 124439808u, "gpt2-small parameter count %zu", m.n_params);
    const model_tensor *t = model_find_tensor(&m, "transformer.h.11.attn.c_attn.weight");
    CHECK(t && t->shape[0] == 768 && t->shape[1] == 2304, "c_attn is Conv1D [in,out] (768, 2304)");
    CHECK(model_find_tensor(&m, "lm_head.weight") == NULL, "tied gpt2 has no lm_head tensor");
    CHECK(m.w.lm_head == m.w.tok_emb, "tied head aliases the embedding");
    CHECK(m.w.layers[11].proj_b == m.params + model_find_tensor(&m, "transformer.h.11.mlp.c_proj.bias")->offset,
          "typed view points at the named tensor");
    model_free(&m);
    model_free(&m); /* safe twice */
}

static void check_llama_gqa(void) {
    model_config c;
    model_config_defaults(&c, MODEL_FAMILY_LLAMA);
    c.n_layers = 5; c.dim = 64; c.n_heads = 8; c.n_kv_heads = 4; c.ffn_dim = 172;
    c.vocab_size = 512; c.context = 512; c.tied_embeddings = 1;
    model m;
    rlhf_error err = {0};
    CHECK(model_init(&m, &c, &err) == 0, "llama init: %s", err.msg);
    /* stories260K: 260K parameters (= 512*64 + 5*(64 + 64*64 + 2*32*64 + 64*64 + 64 + 3*172*64) + 64) */
    size_t expect = 512 * 64 + 5 * (64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 64 + 3 * 172 * 64) + 64;
    CHECK(m.n_params == expect, "stories260K parameter count %zu vs %zu", m.n_params, expect);
    const model_tensor *q = model_find_tensor(&m, "model.layers.2.self_attn.q_proj.weight");
    const model_tensor *k = model_find_tensor(&m, "model.layers.2.self_attn.k_proj.weight");
    const model_tensor *v = model_find_tensor(&m, "model.layers.2.self_attn.v_proj.weight");
    CHECK(q && k && v && k->offset == q->offset + q->numel && v->offset == k->offset + k->numel,
          "q/k/v are contiguous for the fused sgemm");
    CHECK(k->shape[0] == 32 && k->shape[1] == 64, "k_proj is (NKV*HS, C) = (32, 64)");
    const model_tensor *g = model_find_tensor(&m, "model.layers.2.mlp.gate_proj.weight");
    const model_tensor *u = model_find_tensor(&m, "model.layers.2.mlp.up_proj.weight");
    CHECK(g && u && u->offset == g->offset + g->numel, "gate/up are contiguous");
    CHECK(m.w.layers[2].fc_w == m.params + g->offset, "fc_w points at gate_proj");

    rng_t r1, r2;
    rng_seed(&r1, 7);
    rng_seed(&r2, 7);
    model m2;
    CHECK(model_init(&m2, &c, &err) == 0, "second init");
    model_init_random(&m, &r1);
    model_init_random(&m2, &r2);
    CHECK(memcmp(m.params, m2.params, m.n_floats * sizeof(float)) == 0, "same seed, same weights");
    CHECK(m.w.layers[0].ln1_w[0] == 1.0f, "norm gains start at 1");
    CHECK(model_alloc_grads(&m, &err) == 0 && m.g.layers[4].proj_w == m.grads + model_find_tensor(&m, "model.layers.4.mlp.down_proj.weight")->offset,
          "gradient views bound like parameter views");
    model_free(&m);
    model_free(&m2);

    c.n_kv_heads = 3;
    CHECK(model_init(&m, &c, &err) == RLHF_ERR_INVALID && strstr(err.msg, "n_kv_heads"),
          "bad n_kv_heads refused with the field named: %s", err.msg);
    model_free(&m);
}

int main(void) {
    check_gpt2_small();
    check_llama_gqa();
    return test_finish("test_model_layout");
}
