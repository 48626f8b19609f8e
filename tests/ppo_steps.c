/* ppo_steps.c — test helper for the PyTorch check of PPO (tests/reference/ppo_torch.py).
 *
 * Usage: ppo_steps (model shape as tests/step_args.h) --batch B --seq T [--kl-estimator k1|k3]
 *        [--kl-coef C] [--gamma G] [--lam L] [--cliprange E] [--cliprange-value E] [--vf-coef C]
 *        [--temperature T] [--no-whiten] [--lora-rank R --lora-alpha A --lora-targets LIST]
 *        --seed N --out DIR
 *
 * With --lora-rank the trained policy is a LoRA adapter on DIR/policy (tests/lora_steps.h: B
 * random, saved to DIR/adapter), the reference is the base with the adapter off (no DIR/ref), and
 * the dumped gradients are the adapter's (PEFT names) and the value head's.
 *
 * Makes a random policy (DIR/policy), a different random reference (DIR/ref) and a random value
 * head; draws B completion rows (prompt then completion, ids 1..V-1, padded with 0, targets only
 * on the completion) and a score per row. The rollout's log-probabilities and values are the
 * policy's own (training forward at the temperature) plus noise of +-0.3, so both clippings
 * engage; the reference's come from DIR/ref. Then ppo_rollout_advantages (KL-penalised rewards,
 * GAE, whitening) and one forward + PPO head + backward. DIR/rollout.safetensors holds every
 * input and intermediate (tokens, targets as float32, old_lp, ref_lp, old_values, scores,
 * rewards, adv, returns, kl_sum, v_head.weight, v_head.bias); DIR/grads.safetensors the loss and
 * every gradient ("grad.NAME", the value head's as "grad.v_head.weight" / "grad.v_head.bias").
 * Then S optimizer steps (--steps, AdamW settings as tests/step_args.h) through train_loop_run on
 * that same micro-batch, the value head's AdamW stepping beside the policy's.
 * stdout: {"losses", "grad_norms" (per step), "final_loss", "v_final" (the value head after the
 * last step), "loss", "metrics" (the single pass), "adaptive_kl" (ppo_adaptive_kl at a few KLs)}. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/rng.h"
#include "src/formats/checkpoint.h"
#include "src/formats/safetensors.h"
#include "src/model/model.h"
#include "src/train/loop.h"
#include "src/train/ppo.h"
#include "src/train/train.h"
#include "tests/head_steps.h"
#include "tests/lora_steps.h"
#include "tests/step_args.h"

/* The fixed micro-batch at every step (PPO's epochs over one minibatch): the head's per-position
 * arrays stay as set; each step first lets the head apply the previous step's value update. */
typedef struct {
    ppo_head *h;
    const int32_t *tokens, *targets;
    int B, T;
} data_ctx;

static int fill(void *vctx, long step, int micro, rng_t *rng, train_batch *b, rlhf_error *err) {
    (void)micro;
    (void)rng;
    const data_ctx *d = vctx;
    b->B = d->B;
    b->T = d->T;
    memcpy(b->tokens, d->tokens, (size_t)d->B * d->T * sizeof(int32_t));
    memcpy(b->targets, d->targets, (size_t)d->B * d->T * sizeof(int32_t));
    return ppo_head_set_step(d->h, step, err);
}

int main(int argc, char **argv) {
    const char *out = arg(argc, argv, "--out", NULL);
    if (!out) {
        fprintf(stderr, "ppo_steps: --out DIR is required\n");
        return 2;
    }
    model_config c;
    step_args_config(argc, argv, &c);
    train_params tp;
    const int S = step_args_train(argc, argv, &tp);
    const int B = tp.batch, T = tp.context, C = c.dim;
    const uint64_t seed = strtoull(arg(argc, argv, "--seed", "1"), NULL, 10);
    ppo_params pp;
    ppo_params_defaults(&pp);
    pp.cliprange = (float)atof(arg(argc, argv, "--cliprange", "0.2"));
    pp.cliprange_value = (float)atof(arg(argc, argv, "--cliprange-value", "0.2"));
    pp.vf_coef = (float)atof(arg(argc, argv, "--vf-coef", "0.1"));
    pp.temperature = (float)atof(arg(argc, argv, "--temperature", "0.7"));
    const double kl_coef = atof(arg(argc, argv, "--kl-coef", "0.05")), gamma = atof(arg(argc, argv, "--gamma", "1")),
                 lam = atof(arg(argc, argv, "--lam", "0.95"));
    const int whiten = !flag(argc, argv, "--no-whiten");
    rlhf_error err = {0};
    ppo_kl_estimator est;
    if (ppo_kl_estimator_parse(arg(argc, argv, "--kl-estimator", "k1"), &est, &err)) {
        fprintf(stderr, "ppo_steps: %s\n", err.msg);
        return 2;
    }
    lora_params lrp;
    lora_steps_args(argc, argv, &lrp);
    model m = {0}, ref = {0};
    lora lo = {0};
    train t = {0};
    ppo_head h = {0};
    const size_t bt = (size_t)B * T;
    int32_t *tokens = calloc(bt, sizeof *tokens), *targets = calloc(bt, sizeof *targets);
    float *fl = calloc(bt * 9 + 2 * (size_t)B, sizeof *fl);
    double *scores = calloc((size_t)B, sizeof *scores), *kl_sum = calloc((size_t)B, sizeof *kl_sum);
    float *ftok = fl, *ftg = fl + bt, *old_lp = fl + 2 * bt, *ref_lp = fl + 3 * bt, *old_v = fl + 4 * bt,
          *rewards = fl + 5 * bt, *adv = fl + 6 * bt, *returns = fl + 7 * bt, *scratch = fl + 8 * bt,
          *fscores = fl + 9 * bt, *fkl = fscores + B;
    char path[4096];
    rng_t rng;
    rng_seed(&rng, seed);
    int rc = tokens && targets && fl && scores && kl_sum ? RLHF_OK : rlhf_errorf(&err, RLHF_ERR_NOMEM, "out of memory");
    if (!rc) rc = model_init(&m, &c, &err);
    if (!rc && lrp.rank == 0) rc = model_init(&ref, &c, &err);
    if (rc) goto done;
    model_init_random(&m, &rng);
    snprintf(path, sizeof path, "%s/policy", out);
    if ((rc = checkpoint_save(&m, path, &err))) goto done;
    if (lrp.rank == 0) {
        model_init_random(&ref, &rng);
        snprintf(path, sizeof path, "%s/ref", out);
        if ((rc = checkpoint_save(&ref, path, &err))) goto done;
    }
    for (int r = 0; r < B; r++) {
        const int np = 1 + (int)rng_below(&rng, (uint64_t)(T / 2));
        const int len = r == 0 ? T : np + 1 + (int)rng_below(&rng, (uint64_t)(T - np));
        for (int k = 0; k < T; k++)
            tokens[(size_t)r * T + k] = k < len ? 1 + (int32_t)rng_below(&rng, (uint64_t)(c.vocab_size - 1)) : 0;
        for (int k = 0; k < T; k++)
            targets[(size_t)r * T + k] = k + 1 >= np && k + 1 < len ? tokens[(size_t)r * T + k + 1] : -1;
        scores[r] = 2.0 * rng_float(&rng) - 1.0;
    }
    if (lrp.rank > 0) rc = lora_steps_init(&m, &lo, &lrp, &rng, out, &t, &tp, &err);
    else rc = train_init(&t, &m, &tp, &err);
    if (rc) goto done;
    if ((rc = ppo_head_init(&h, &pp, &m, B, T, &tp.optim, 1, &err))) goto done;
    for (int i = 0; i <= C; i++) h.vparams[i] = (float)(0.4 * rng_float(&rng) - 0.2);
    /* the rollout: the policy's own log-probabilities and values, perturbed; the reference's */
    if ((rc = rollout_token_logps(&m, &t.acts, tokens, targets, B, T, pp.temperature, old_lp, &err))) goto done;
    ppo_head_values(&h, &t.acts, targets, B, T, old_v);
    if (lrp.rank > 0) lora_set_enabled(&lo, 0); /* the reference: the base with the adapter off */
    rc = rollout_token_logps(lrp.rank > 0 ? &m : &ref, &t.acts, tokens, targets, B, T, pp.temperature, ref_lp, &err);
    if (lrp.rank > 0) lora_set_enabled(&lo, 1);
    if (rc) goto done;
    for (size_t i = 0; i < bt; i++)
        if (targets[i] >= 0) {
            old_lp[i] += (float)(0.6 * rng_float(&rng) - 0.3);
            old_v[i] += (float)(0.6 * rng_float(&rng) - 0.3);
        }
    ppo_rollout_advantages(old_lp, ref_lp, old_v, targets, scores, B, T, est, kl_coef, gamma, lam, whiten, rewards, adv,
                           returns, kl_sum);
    memcpy(h.old_lp, old_lp, bt * sizeof(float));
    memcpy(h.old_values, old_v, bt * sizeof(float));
    memcpy(h.adv, adv, bt * sizeof(float));
    memcpy(h.returns, returns, bt * sizeof(float));
    ppo_head_set_rollout_metrics(&h, 0.5, 1.0, -0.1, 0.3, 0.2, 2, kl_coef);
    /* one forward + head + backward */
    train_zero_grads(&t);
    train_batch b = {.B = B, .T = T, .tokens = tokens, .targets = targets};
    train_head_out ho = {0};
    const float *dl = NULL, *dh = NULL;
    train_head head = ppo_train_head(&h);
    if ((rc = ppo_head_set_step(&h, 0, &err))) goto done;
    if ((rc = model_forward(&m, &t.acts, tokens, B, T, &err))) goto done;
    if ((rc = head.loss(head.self, &m, &t.acts, &b, 1, &dl, &dh, &ho, &err))) goto done;
    if ((rc = model_backward(&m, &t.acts, dl, dh, &err))) goto done;
    (void)scratch;
    for (size_t i = 0; i < bt; i++) {
        ftok[i] = (float)tokens[i];
        ftg[i] = (float)targets[i];
    }
    for (int r = 0; r < B; r++) {
        fscores[r] = (float)scores[r];
        fkl[r] = (float)kl_sum[r];
    }
    {
        const char *names[] = {"tokens", "targets", "old_lp", "ref_lp", "old_values", "rewards", "adv", "returns"};
        const float *data[] = {ftok, ftg, old_lp, ref_lp, old_v, rewards, adv, returns};
        safetensors_entry e[12];
        memset(e, 0, sizeof e);
        for (int k = 0; k < 8; k++)
            e[k] = (safetensors_entry){.name = names[k], .dtype = SAFETENSORS_DTYPE_F32, .ndim = 2, .shape = {B, T},
                                       .data = data[k]};
        e[8] = (safetensors_entry){.name = "scores", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 1, .shape = {B}, .data = fscores};
        e[9] = (safetensors_entry){.name = "kl_sum", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 1, .shape = {B}, .data = fkl};
        e[10] = (safetensors_entry){.name = "v_head.weight", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 1, .shape = {C},
                                    .data = h.vparams};
        e[11] = (safetensors_entry){.name = "v_head.bias", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 1, .shape = {1},
                                    .data = h.vparams + C};
        snprintf(path, sizeof path, "%s/rollout.safetensors", out);
        if ((rc = safetensors_write(path, e, 12, &err))) goto done;
    }
    {
        const model_tensor *tt = lrp.rank > 0 ? lo.tensors : m.tensors;
        const int ntt = lrp.rank > 0 ? lo.n_tensors : m.n_tensors;
        safetensors_entry *e = calloc((size_t)ntt + 3, sizeof *e);
        char (*names)[MODEL_TENSOR_NAME_MAX + 8] = calloc((size_t)ntt, sizeof *names);
        float loss_f = (float)ho.loss;
        if (!e || !names) rc = rlhf_errorf(&err, RLHF_ERR_NOMEM, "out of memory");
        if (!rc) {
            e[0] = (safetensors_entry){.name = "loss", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 1, .shape = {1}, .data = &loss_f};
            for (int i = 0; i < ntt; i++) {
                const model_tensor *mt = &tt[i];
                snprintf(names[i], sizeof names[i], "grad.%s", mt->name);
                e[1 + i] = (safetensors_entry){.name = names[i], .dtype = SAFETENSORS_DTYPE_F32, .ndim = mt->ndim,
                                               .shape = {mt->shape[0], mt->shape[1]}, .data = t.grads + mt->offset};
            }
            e[1 + ntt] = (safetensors_entry){.name = "grad.v_head.weight", .dtype = SAFETENSORS_DTYPE_F32,
                                             .ndim = 1, .shape = {C}, .data = h.vgrads};
            e[2 + ntt] = (safetensors_entry){.name = "grad.v_head.bias", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 1,
                                             .shape = {1}, .data = h.vgrads + C};
            snprintf(path, sizeof path, "%s/grads.safetensors", out);
            rc = safetensors_write(path, e, ntt + 3, &err);
        }
        free(e);
        free(names);
        if (rc) goto done;
    }
    /* S optimizer steps through the loop on the same micro-batch (the dumped gradient is not applied) */
    double *log = calloc((size_t)S * 3, sizeof *log);
    if (!log) {
        rc = rlhf_errorf(&err, RLHF_ERR_NOMEM, "out of memory");
        goto done;
    }
    memset(h.vgrads, 0, ((size_t)C + 1) * sizeof(float));
    h.have_grads = 0;
    (void)head_steps_run; /* only the progress recorder of head_steps.h is used here */
    head_steps_log pc = {.log = log, .S = S};
    data_ctx dc = {&h, tokens, targets, B, T};
    train_loop_params lp = {0};
    lp.t = &t;
    lp.head = head;
    lp.data = (train_data){.fill = fill, .ctx = &dc};
    lp.steps = S;
    lp.saved_step = -1;
    rng_seed(&lp.rng, 1);
    lp.progress = head_steps_progress;
    lp.progress_ctx = &pc;
    rc = train_loop_run(&lp, NULL, &err);
    if (!rc) rc = ppo_head_flush(&h, &err);
    train_head_out fo = {0};
    if (!rc) rc = model_forward(&m, &t.acts, tokens, B, T, &err);
    if (!rc) rc = head.loss(head.self, &m, &t.acts, &b, 0, NULL, NULL, &fo, &err);
    if (rc) {
        free(log);
        goto done;
    }
    printf("{\"losses\": [");
    for (int i = 0; i < S; i++) printf("%s%.9g", i ? ", " : "", log[i]);
    printf("], \"grad_norms\": [");
    for (int i = 0; i < S; i++) printf("%s%.9g", i ? ", " : "", log[2 * S + i]);
    printf("], \"final_loss\": %.9g, \"v_final\": [", fo.loss);
    for (int i = 0; i <= C; i++) printf("%s%.9g", i ? ", " : "", h.vparams[i]);
    printf("], ");
    free(log);
    printf("\"loss\": %.9g, \"metrics\": {", ho.loss);
    for (int i = 0; i < ho.n; i++) printf("%s\"%s\": %.9g", i ? ", " : "", ho.names[i], ho.values[i]);
    /* the adaptive KL coefficient after one batch of 64 episodes at KL 0.5, 5.5, 6, 7 and 30 (target
     * 6, horizon 10000, from 0.2: TRL's old defaults) */
    const double kls[5] = {0.5, 5.5, 6.0, 7.0, 30.0};
    printf("}, \"adaptive_kl\": [");
    for (int i = 0; i < 5; i++) printf("%s%.12g", i ? ", " : "", ppo_adaptive_kl(0.2, kls[i], 6.0, 64, 10000));
    printf("]}\n");
done:
    if (rc) fprintf(stderr, "ppo_steps: %s\n", err.msg);
    ppo_head_free(&h);
    train_free(&t);
    if (m.lora) lora_detach(&m);
    lora_free(&lo);
    model_free(&m);
    model_free(&ref);
    free(tokens);
    free(targets);
    free(fl);
    free(scores);
    free(kl_sum);
    return rc ? 1 : 0;
}
