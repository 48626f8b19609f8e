/* step_args.h — the command line shared by the reference step helpers (train_steps.c,
 * score_steps.c): a random model's shape and the training settings, as --name value pairs. */
#ifndef RLHF_STEP_ARGS_H
#define RLHF_STEP_ARGS_H

#include <stdlib.h>
#include <string.h>

#include "src/model/model.h"
#include "src/train/train.h"

static const char *arg(int argc, char **argv, const char *name, const char *def) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return def;
}

static int flag(int argc, char **argv, const char *name) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0) return 1;
    return 0;
}

/* --family --layers --dim --heads --kv-heads --ffn --vocab --context --untied --tied */
static void step_args_config(int argc, char **argv, model_config *c) {
    model_config_defaults(c, strcmp(arg(argc, argv, "--family", "gpt2"), "llama") == 0 ? MODEL_FAMILY_LLAMA : MODEL_FAMILY_GPT2);
    c->n_layers = atoi(arg(argc, argv, "--layers", "2"));
    c->dim = atoi(arg(argc, argv, "--dim", "32"));
    c->n_heads = atoi(arg(argc, argv, "--heads", "4"));
    c->n_kv_heads = atoi(arg(argc, argv, "--kv-heads", arg(argc, argv, "--heads", "4")));
    c->ffn_dim = atoi(arg(argc, argv, "--ffn", "128"));
    c->vocab_size = atoi(arg(argc, argv, "--vocab", "64"));
    c->context = atoi(arg(argc, argv, "--context", "32"));
    if (flag(argc, argv, "--untied")) c->tied_embeddings = 0;
    if (flag(argc, argv, "--tied")) c->tied_embeddings = 1;
}

/* --batch --seq --accum --steps --lr --min-lr --warmup --weight-decay --grad-clip; returns steps */
static int step_args_train(int argc, char **argv, train_params *tp) {
    train_params_defaults(tp);
    tp->batch = atoi(arg(argc, argv, "--batch", "4"));
    tp->context = atoi(arg(argc, argv, "--seq", "16"));
    tp->accum = atoi(arg(argc, argv, "--accum", "1"));
    const int steps = atoi(arg(argc, argv, "--steps", "10"));
    tp->optim.lr = (float)atof(arg(argc, argv, "--lr", "1e-2"));
    tp->optim.min_lr = (float)atof(arg(argc, argv, "--min-lr", "1e-3"));
    tp->optim.warmup_steps = atol(arg(argc, argv, "--warmup", "3"));
    tp->optim.total_steps = steps;
    tp->optim.weight_decay = (float)atof(arg(argc, argv, "--weight-decay", "0.1"));
    tp->optim.grad_clip = (float)atof(arg(argc, argv, "--grad-clip", "1.0"));
    return steps;
}

#endif
