/* lora_steps.h — the LoRA part of the reference step helpers of the online trainers
 * (ppo_steps.c, grpo_steps.c): --lora-rank R --lora-alpha A --lora-targets LIST, and a fresh
 * adapter on the policy whose B is drawn at random (PEFT starts it at zero, which would leave A
 * without a gradient to check), saved to OUT/adapter, attached, and the trainer over it. */
#ifndef RLHF_TEST_LORA_STEPS_H
#define RLHF_TEST_LORA_STEPS_H

#include <stdio.h>
#include <string.h>

#include "src/core/rng.h"
#include "src/model/lora.h"
#include "src/model/model.h"
#include "src/train/train.h"
#include "tests/step_args.h"

static void lora_steps_args(int argc, char **argv, lora_params *lp) {
    lora_params_defaults(lp);
    lp->rank = atoi(arg(argc, argv, "--lora-rank", "0"));
    lp->alpha = (float)atof(arg(argc, argv, "--lora-alpha", "8"));
    lp->targets = arg(argc, argv, "--lora-targets", NULL);
}

/* lo on m (random B), saved to out/adapter, attached; t trains it. */
static int lora_steps_init(model *m, lora *lo, const lora_params *lp, rng_t *rng, const char *out, train *t,
                           const train_params *tp, rlhf_error *err) {
    char path[4096];
    int rc = lora_init(lo, m, lp, rng, err);
    if (rc) return rc;
    for (int i = 0; i < lo->n_tensors; i++)
        if (strstr(lo->tensors[i].name, "lora_B"))
            for (size_t k = 0; k < lo->tensors[i].numel; k++) lo->params[lo->tensors[i].offset + k] = 0.1f * rng_normal(rng);
    lora_save_info info = {"tiny-random", NULL};
    snprintf(path, sizeof path, "%s/adapter", out);
    if ((rc = lora_save(lo, path, &info, NULL, 0, err))) return rc;
    lora_attach(lo, m);
    return train_init_lora(t, m, lo, tp, err);
}

#endif
