/* sft_steps.c — test helper for the PyTorch SFT check (tests/reference/sft_torch.py).
 *
 * Usage: sft_steps family=gpt2|llama layers=L dim=C heads=NH kv_heads=K ffn=F vocab=V context=T
 *        tied=0|1 seed=S batch=B accum=A steps=N lr=LR min_lr=LR warmup=W weight_decay=WD
 *        grad_clip=C lora_rank=R lora_alpha=A lora_targets=LIST out=DIR
 *
 * Builds a random model and a set of SFT texts (prompt/completion pairs of random letters, and a
 * few conversations in the template-less chat format), encodes them with the byte tokenizer
 * through sft_encode (EOS = id 0), and drives the SFT data source and train_loop_run exactly as
 * `rlhf sft` does. Writes to DIR:
 *   model/            the initial model (checkpoint_save)
 *   adapter/          the initial adapter when lora_rank > 0 (lora_save; B drawn nonzero here so
 *                     every A gradient is nonzero too)
 *   grads.safetensors the gradient of the masked loss of micro-batch (step 0, micro 0) for every
 *                     trained tensor (model names, or PEFT names with LoRA)
 *   final.safetensors the trained tensors after `steps` optimizer steps
 * and prints one JSON object: {"loss0", "batches": [[{"B","T","tokens","targets"} x A] x N],
 * "losses", "lrs", "grad_norms", "n_loss_tokens"}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/rng.h"
#include "src/formats/checkpoint.h"
#include "src/formats/safetensors.h"
#include "src/model/lora.h"
#include "src/train/loop.h"
#include "src/train/sft.h"

static const char *arg(int argc, char **argv, const char *key, const char *def) {
    size_t n = strlen(key);
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], key, n) == 0 && argv[i][n] == '=') return argv[i] + n + 1;
    return def;
}

typedef struct {
    double *loss, *lr, *norm;
} record;

static void on_progress(const train_progress *pg, void *ctx) {
    record *r = ctx;
    if (pg->event != TRAIN_EVENT_STEP) return;
    r->loss[pg->step - 1] = pg->loss;
    r->lr[pg->step - 1] = pg->lr;
    r->norm[pg->step - 1] = pg->grad_norm;
}

/* Writes the trained buffer (values `buf`) under the tensor table's names. */
static int write_tensors(const char *path, const model_tensor *tt, int n, const float *buf, rlhf_error *err) {
    safetensors_entry *e = calloc((size_t)n, sizeof *e);
    if (!e) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        e[i].name = tt[i].name;
        e[i].dtype = SAFETENSORS_DTYPE_F32;
        e[i].ndim = tt[i].ndim;
        e[i].shape[0] = tt[i].shape[0];
        e[i].shape[1] = tt[i].shape[1];
        e[i].data = buf + tt[i].offset;
    }
    int rc = safetensors_write(path, e, n, err);
    free(e);
    return rc;
}

static void print_batch(const train_batch *b) {
    printf("{\"B\": %d, \"T\": %d, \"tokens\": [", b->B, b->T);
    for (int i = 0; i < b->B * b->T; i++) printf("%s%d", i ? "," : "", b->tokens[i]);
    printf("], \"targets\": [");
    for (int i = 0; i < b->B * b->T; i++) printf("%s%d", i ? "," : "", b->targets[i]);
    printf("]}");
}

int main(int argc, char **argv) {
    rlhf_error err = {0};
    const char *out = arg(argc, argv, "out", NULL);
    if (!out) {
        fprintf(stderr, "sft_steps: out=DIR is required\n");
        return 2;
    }
    model_config c;
    model_config_defaults(&c, strcmp(arg(argc, argv, "family", "gpt2"), "llama") == 0 ? MODEL_FAMILY_LLAMA
                                                                                      : MODEL_FAMILY_GPT2);
    c.n_layers = atoi(arg(argc, argv, "layers", "2"));
    c.dim = atoi(arg(argc, argv, "dim", "32"));
    c.n_heads = atoi(arg(argc, argv, "heads", "4"));
    c.n_kv_heads = atoi(arg(argc, argv, "kv_heads", arg(argc, argv, "heads", "4")));
    c.ffn_dim = atoi(arg(argc, argv, "ffn", "64"));
    c.vocab_size = atoi(arg(argc, argv, "vocab", "256"));
    c.context = atoi(arg(argc, argv, "context", "64"));
    c.tied_embeddings = atoi(arg(argc, argv, "tied", "1"));
    const uint64_t seed = strtoull(arg(argc, argv, "seed", "1"), NULL, 10);
    const int steps = atoi(arg(argc, argv, "steps", "10"));
    train_params tp;
    train_params_defaults(&tp);
    tp.batch = atoi(arg(argc, argv, "batch", "3"));
    tp.accum = atoi(arg(argc, argv, "accum", "1"));
    tp.optim.lr = (float)atof(arg(argc, argv, "lr", "1e-2"));
    tp.optim.min_lr = (float)atof(arg(argc, argv, "min_lr", "1e-3"));
    tp.optim.warmup_steps = atol(arg(argc, argv, "warmup", "3"));
    tp.optim.weight_decay = (float)atof(arg(argc, argv, "weight_decay", "0.1"));
    tp.optim.grad_clip = (float)atof(arg(argc, argv, "grad_clip", "1.0"));
    tp.optim.beta2 = 0.999f;
    tp.optim.total_steps = steps;
    lora_params lp;
    lora_params_defaults(&lp);
    lp.rank = atoi(arg(argc, argv, "lora_rank", "0"));
    lp.alpha = (float)atof(arg(argc, argv, "lora_alpha", "8"));
    lp.targets = arg(argc, argv, "lora_targets", NULL);

    model m = {0};
    lora lo = {0};
    train t = {0};
    tokenizer *tok = NULL;
    sft_texts texts = {0};
    sft_encoded enc = {0};
    sft_source src = {0};
    train_batch b = {0};
    record rec = {0};
    char path[4096];
    rng_t rng;
    rng_seed(&rng, seed);
    int rc = model_init(&m, &c, &err);
    if (rc) goto fail;
    model_init_random(&m, &rng);
    snprintf(path, sizeof path, "%s/model", out);
    if ((rc = checkpoint_save(&m, path, &err))) goto fail;

    /* Texts: random letters; a few chats in the HH format (no template). */
    static char pbuf[64][32], cbuf[64][32], mbuf[8][256];
    texts.items = calloc(72, sizeof *texts.items);
    if (!texts.items) goto nomem;
    for (int i = 0; i < 64; i++) {
        int lp_ = 2 + (int)rng_below(&rng, 12), lc = 1 + (int)rng_below(&rng, 8);
        for (int k = 0; k < lp_; k++) pbuf[i][k] = (char)('a' + rng_below(&rng, 26));
        pbuf[i][lp_] = 0;
        for (int k = 0; k < lc; k++) cbuf[i][k] = (char)('A' + rng_below(&rng, 26));
        cbuf[i][lc] = 0;
        texts.items[texts.n].prompt = strdup(pbuf[i]);
        texts.items[texts.n].completion = strdup(cbuf[i]);
        texts.items[texts.n++].line = i + 1;
    }
    for (int i = 0; i < 8; i++) {
        snprintf(mbuf[i], sizeof mbuf[i],
                 "[{\"role\":\"user\",\"content\":\"q%d\"},{\"role\":\"assistant\",\"content\":\"A%d\"},"
                 "{\"role\":\"user\",\"content\":\"r\"},{\"role\":\"assistant\",\"content\":\"B\"}]",
                 i, i);
        texts.items[texts.n].messages_json = strdup(mbuf[i]);
        texts.items[texts.n++].line = 65 + i;
    }
    texts.cap = texts.n;
    if ((rc = tok_new_bytes(&tok, &err))) goto fail;
    sft_encoder ec = {tok, NULL, NULL, NULL, 0, 0, c.context, SFT_TRUNCATE_KEEP_START};
    if ((rc = sft_encode(&enc, &texts, &ec, "sft_steps", &err))) goto fail;
    if ((rc = sft_source_init(&src, &enc, 0.0, seed, tp.batch, tp.accum, 0, &err))) goto fail;
    train_data data = sft_source_data(&src);
    int longest = 2;
    for (size_t i = 0; i < enc.n; i++)
        if (enc.len[i] > longest) longest = enc.len[i];
    tp.context = longest - 1;

    if (lp.rank > 0) {
        if ((rc = lora_init(&lo, &m, &lp, &rng, &err))) goto fail;
        /* B nonzero (PEFT starts it at zero), so A's gradients are tested too. */
        for (int i = 0; i < lo.n_tensors; i++)
            if (strstr(lo.tensors[i].name, "lora_B"))
                for (size_t k = 0; k < lo.tensors[i].numel; k++) lo.params[lo.tensors[i].offset + k] = 0.1f * rng_normal(&rng);
        lora_save_info info = {"tiny-random", NULL};
        snprintf(path, sizeof path, "%s/adapter", out);
        if ((rc = lora_save(&lo, path, &info, NULL, 0, &err))) goto fail;
        lora_attach(&lo, &m);
        rc = train_init_lora(&t, &m, &lo, &tp, &err);
    } else {
        rc = train_init(&t, &m, &tp, &err);
    }
    if (rc) goto fail;
    const model_tensor *tt = lp.rank > 0 ? lo.tensors : m.tensors;
    const int ntt = lp.rank > 0 ? lo.n_tensors : m.n_tensors;

    /* The gradient of micro-batch (0, 0). */
    if ((rc = train_batch_alloc(&b, t.B, t.T, &err))) goto fail;
    if ((rc = data.fill(data.ctx, 0, 0, &rng, &b, &err))) goto fail;
    if ((rc = model_forward(&m, &t.acts, b.tokens, b.B, b.T, &err))) goto fail;
    train_head_out ho;
    memset(&ho, 0, sizeof ho);
    const float *dl = NULL, *dh = NULL;
    if ((rc = train_head_lm.loss(NULL, &m, &t.acts, &b, 1, &dl, &dh, &ho, &err))) goto fail;
    train_zero_grads(&t);
    if ((rc = model_backward(&m, &t.acts, dl, dh, &err))) goto fail;
    snprintf(path, sizeof path, "%s/grads.safetensors", out);
    if ((rc = write_tensors(path, tt, ntt, t.grads, &err))) goto fail;
    train_zero_grads(&t);
    printf("{\"loss0\": %.17g, \"n_loss_tokens\": %zu, \"batches\": [", ho.loss, enc.n_loss_tokens);
    for (int s = 0; s < steps; s++) {
        printf("%s[", s ? ", " : "");
        for (int k = 0; k < tp.accum; k++) {
            b.B = t.B;
            b.T = t.T;
            if ((rc = data.fill(data.ctx, s, k, &rng, &b, &err))) goto fail;
            if (k) printf(", ");
            print_batch(&b);
        }
        printf("]");
    }

    rec.loss = calloc((size_t)steps * 3, sizeof(double));
    if (!rec.loss) goto nomem;
    rec.lr = rec.loss + steps;
    rec.norm = rec.loss + 2 * steps;
    train_loop_params lpm;
    memset(&lpm, 0, sizeof lpm);
    lpm.t = &t;
    lpm.head = train_head_lm;
    lpm.data = data;
    lpm.data.n_val = 0;
    lpm.steps = steps;
    lpm.rng = rng;
    lpm.progress = on_progress;
    lpm.progress_ctx = &rec;
    lpm.saved_step = -1;
    if ((rc = train_loop_run(&lpm, NULL, &err))) goto fail;
    snprintf(path, sizeof path, "%s/final.safetensors", out);
    if ((rc = write_tensors(path, tt, ntt, t.params, &err))) goto fail;
    const char *names[3] = {"losses", "lrs", "grad_norms"};
    for (int k = 0; k < 3; k++) {
        printf("], \"%s\": [", names[k]);
        for (int s = 0; s < steps; s++) printf("%s%.17g", s ? ", " : "", rec.loss[k * steps + s]);
    }
    printf("]}\n");
    goto done;
nomem:
    rc = rlhf_errorf(&err, RLHF_ERR_NOMEM, "out of memory");
fail:
    fprintf(stderr, "sft_steps: %s\n", err.msg);
done:
    free(rec.loss);
    train_batch_free(&b);
    train_free(&t);
    if (m.lora) lora_detach(&m);
    lora_free(&lo);
    sft_source_free(&src);
    sft_encoded_free(&enc);
    sft_texts_free(&texts);
    tok_close(&tok);
    model_free(&m);
    return rc ? 1 : 0;
}
