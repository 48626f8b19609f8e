/* cmd_ppo.c — `rlhf ppo`: prompts from JSONL, a reward model, the common trainer flags plus PPO's
 * own, the run's record (metrics, every rollout as a generation) and the held-out reward before
 * and after. The training itself is src/train/ppo_run.c. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repl/commands.h"
#include "repl/default_model.h"
#include "repl/out.h"
#include "repl/rollout_store.h"
#include "repl/run_log.h"
#include "repl/trainer_flags.h"
#include "src/train/ppo.h"

static const char *const ppo_usage =
    "rlhf ppo --model SFT_DIR --reward RM_DIR (--prompts FILE.jsonl | --db FILE) --out DIR [--steps N] [--lr LR] [--batch B] "
    "[--accum N] [--num-mini-batches M] [--ppo-epochs E] [--num-generations G] [--max-new-tokens N] "
    "[--temperature T] [--kl-coef C] [--kl-estimator k1|k3] [--target-kl KL] [--kl-horizon H] [--cliprange E] "
    "[--cliprange-value E] [--vf-coef C] [--gamma G] [--lam L] [--no-whiten] [--missing-eos-penalty P] "
    "[--eval-samples K] [--value-head FILE] [--lora-rank R ...] [--save-every N] [--resume] "
    "[--json-log FILE] [--runs-db FILE]";

static const char *const ppo_help =
    "Proximal policy optimisation against a reward model, as TRL's PPOTrainer computes it. Each rollout\n"
    "batch (batch x accum x mini-batches completions) is sampled from the current policy at --temperature\n"
    "(G completions per prompt from one batched pass), scored by the reward model at the completion's\n"
    "last token (the user prompt followed by the completion, its own tokenizer), minus\n"
    "--missing-eos-penalty when it never stopped. Per token the reward is -kl_coef x KL to the starting\n"
    "model (k1: log p - log p_ref; k3: exp(ref - lp) - (ref - lp) - 1), plus the score on the last\n"
    "token; advantages by GAE (--gamma, --lam), whitened over the batch (--no-whiten: raw). Then\n"
    "--ppo-epochs passes of --num-mini-batches minibatches, one optimizer step each, of the clipped\n"
    "surrogate (--cliprange) plus --vf-coef x the clipped value loss (--cliprange-value). Old\n"
    "log-probabilities, values and the reference's log-probabilities come from the training forward\n"
    "pass (logits / temperature), not from the decoder.\n"
    "\n"
    "The value head shares the policy's body (a linear layer on the final hidden state, its own AdamW,\n"
    "starting at zero), unlike TRL's separate value model initialised from the reward model: on a\n"
    "small CPU that model would double every forward and backward and the optimizer's memory; the\n"
    "value loss reaches the body, weighted by --vf-coef (0.1) as in TRL's older shared-body design.\n"
    "The value head is saved beside the policy as OUT/value_head.safetensors (TRL's names\n"
    "v_head.summary.weight (1, hidden) and v_head.summary.bias); --value-head FILE starts a later run\n"
    "from a saved one instead of zero.\n"
    "LoRA (--lora-rank R, --lora-alpha, --lora-dropout, --lora-targets): only a fresh adapter and the\n"
    "value head train (the body is frozen; both losses reach the adapter through it); rollouts sample\n"
    "from the adapter merged into a copy of the targeted matrices (restored after each batch); the\n"
    "reference is the base with the adapter off (no second model); OUT is a PEFT adapter directory\n"
    "(unmerged: rlhf generate --model OUT, rlhf model merge) plus the value head.\n"
    "KL coefficient: fixed (--kl-coef, TRL's 0.05), or adaptive with --target-kl KL (TRL's\n"
    "AdaptiveKLController: after each batch coef *= 1 + clip(kl/target - 1, -0.2, 0.2) x n/horizon).\n"
    "\n"
    "Prompts: JSON lines with a \"prompt\" string, or without --prompts every prompt stored in --db\n"
    "(a chat prompt's last user message; each once); rendered as a user turn through the policy's chat\n"
    "template when it has one. A held-out share (--val-fraction) is answered before and after training,\n"
    "greedily and with --eval-samples samples per prompt at the temperature (the same seeds both times),\n"
    "and the mean reward-model scores are printed.\n"
    "Metrics (TRL's names): objective/kl, objective/entropy, objective/non_score_reward,\n"
    "objective/rlhf_reward, objective/scores, objective/kl_coef, policy/clipfrac_avg,\n"
    "policy/approxkl_avg, policy/entropy_avg, loss/policy_avg, loss/value_avg, val/clipfrac_avg,\n"
    "val/ratio, val/num_eos_tokens. With --runs-db FILE (or --db FILE) every rollout is stored there as a\n"
    "generation of its prompt (seed, decoding settings, reward) to rank in the REPL.\n"
    "Checkpoints (every --save-every steps, at the end and on Ctrl-C) also write OUT/training_state.bin:\n"
    "the policy or adapter, AdamW moments, step, the current rollout batch, the value head and its\n"
    "optimizer, the adaptive KL coefficient. The same command with --resume continues the run exactly\n"
    "(bit-identical with one thread); other settings, prompts, starting model or reward model are\n"
    "refused, naming what differs. A fresh run refuses an OUT that holds a training state.\n"
    "\n"
    "PPO defaults (TRL's PPOConfig): --ppo-epochs 4, --num-mini-batches 1, --num-generations 1,\n"
    "--max-new-tokens 53, --temperature 0.7, --kl-coef 0.05, --kl-estimator k1, --target-kl 0 (fixed),\n"
    "--kl-horizon 10000, --cliprange 0.2, --cliprange-value 0.2, --vf-coef 0.1, --gamma 1, --lam 0.95,\n"
    "--missing-eos-penalty 0 (off), --eval-samples 4.";

int cmd_ppo(int argc, char **argv) {
    trainer_flags f;
    trainer_flags_defaults(&f);
    f.lr = 3e-6;
    f.steps = 100;
    f.batch = 8;
    if (command_wants_help(argc, argv)) {
        out_printf("usage: %s\n\n%s\n\n", ppo_usage, ppo_help);
        trainer_flags_print_help(&f);
        return 0;
    }
    ppo_run_params p;
    ppo_run_params_defaults(&p);
    const char *prompts_path = NULL, *reward_model = NULL;
    for (int i = 1; i < argc; i++) {
        int r = trainer_flags_parse(&f, argc, argv, &i, ppo_usage);
        if (r == TRAINER_FLAGS_ERROR) return 2;
        if (r == TRAINER_FLAGS_TAKEN) continue;
        const char *a = argv[i];
        if (strcmp(a, "--no-whiten") == 0) {
            p.whiten_advantages = 0;
            continue;
        }
        char name[32];
        const char *v;
        if (strncmp(a, "--", 2) != 0) {
            out_error("unexpected argument '%s'", a);
            out_error("usage: %s", ppo_usage);
            return 2;
        }
        if (trainer_flag_value(argc, argv, &i, name, sizeof name, &v, ppo_usage)) return 2;
        long n;
        double d;
        rlhf_error err = {0};
        struct {
            const char *flag;
            float *dst;
            double lo, hi;
        } const reals[] = {
            {"--temperature", &p.ppo.temperature, 1e-3, 100},  {"--kl-coef", &p.kl_coef, 0, 1e6},
            {"--target-kl", &p.target_kl, 0, 1e6},             {"--kl-horizon", &p.kl_horizon, 1, 1e12},
            {"--cliprange", &p.ppo.cliprange, 1e-6, 0.999},    {"--cliprange-value", &p.ppo.cliprange_value, 1e-6, 1e6},
            {"--vf-coef", &p.ppo.vf_coef, 0, 1e6},             {"--gamma", &p.gamma, 0, 1},
            {"--lam", &p.lam, 0, 1},                           {"--missing-eos-penalty", &p.missing_eos_penalty, 0, 1e6},
        };
        struct {
            const char *flag;
            int *dst;
            long min;
        } const ints[] = {
            {"--num-mini-batches", &p.num_mini_batches, 1}, {"--ppo-epochs", &p.ppo_epochs, 1},
            {"--num-generations", &p.num_generations, 1},   {"--max-new-tokens", &p.max_new_tokens, 1},
            {"--eval-samples", &p.eval_samples, 0},
        };
        int done = 0;
        for (size_t k = 0; k < sizeof reals / sizeof reals[0] && !done; k++)
            if (strcmp(name, reals[k].flag) == 0) {
                if (trainer_flag_double(name, v, reals[k].lo, reals[k].hi, &d, ppo_usage)) return 2;
                *reals[k].dst = (float)d;
                done = 1;
            }
        for (size_t k = 0; k < sizeof ints / sizeof ints[0] && !done; k++)
            if (strcmp(name, ints[k].flag) == 0) {
                if (trainer_flag_long(name, v, ints[k].min, &n, ppo_usage)) return 2;
                *ints[k].dst = (int)n;
                done = 1;
            }
        if (done) continue;
        if (strcmp(name, "--prompts") == 0) prompts_path = v;
        else if (strcmp(name, "--reward") == 0) reward_model = v;
        else if (strcmp(name, "--value-head") == 0) p.value_head = v;
        else if (strcmp(name, "--kl-estimator") == 0) {
            if (ppo_kl_estimator_parse(v, &p.kl_estimator, &err)) return out_error("--kl-estimator: %s", err.msg), 2;
        } else {
            out_error("unknown flag '%s'", a);
            out_error("usage: %s", ppo_usage);
            return 2;
        }
    }
    if (!f.model) f.model = default_model_path(); /* the built-in default model, when there is one */
    if (!f.model || !f.out || (!prompts_path && !f.db) || !reward_model) {
        out_error("ppo: --model, --reward, --prompts (or --db) and --out are required");
        out_error("usage: %s", ppo_usage);
        return 2;
    }
    if (f.data) {
        out_error("ppo: prompts come from --prompts FILE.jsonl (--data is not read by this trainer)");
        return 2;
    }
    const char *db_path = f.runs_db ? f.runs_db : f.db; /* --db records the run and its rollouts */
    char **prompts = NULL;
    size_t n_prompts = 0;
    int rc = rollout_prompts_load(prompts_path, f.db, &prompts, &n_prompts);
    if (!rc) {
        p.model_dir = f.model;
        p.reward_model = reward_model;
        p.prompts = (const char *const *)prompts;
        p.n_prompts = n_prompts;
        p.out_dir = f.out;
        p.steps = f.steps > 0 ? f.steps : 100;
        p.batch = f.batch;
        p.accum = f.accum;
        trainer_flags_optim(&f, &p.optim);
        p.val_fraction = f.val_fraction;
        p.seed = f.seed;
        p.save_every = f.save_every;
        p.resume = f.resume;
        trainer_flags_lora(&f, &p.lora);
        char config[2048];
        snprintf(config, sizeof config,
                 "{\"reward_model\":\"%s\",\"batch\":%d,\"accum\":%d,\"num_mini_batches\":%d,\"ppo_epochs\":%d,"
                 "\"num_generations\":%d,\"max_new_tokens\":%d,\"temperature\":%g,\"kl_coef\":%g,\"kl_estimator\":\"%s\","
                 "\"target_kl\":%g,\"kl_horizon\":%g,\"cliprange\":%g,\"cliprange_value\":%g,\"vf_coef\":%g,"
                 "\"gamma\":%g,\"lam\":%g,\"whiten_advantages\":%s,\"missing_eos_penalty\":%g,\"lr\":%g,\"steps\":%ld,"
                 "\"seed\":%llu,\"value_head\":\"shared body\",\"lora_rank\":%d}",
                 reward_model, p.batch, p.accum, p.num_mini_batches, p.ppo_epochs, p.num_generations, p.max_new_tokens,
                 p.ppo.temperature, p.kl_coef, p.kl_estimator == PPO_KL_K1 ? "k1" : "k3", p.target_kl, p.kl_horizon,
                 p.ppo.cliprange, p.ppo.cliprange_value, p.ppo.vf_coef, p.gamma, p.lam,
                 p.whiten_advantages ? "true" : "false", p.missing_eos_penalty, f.lr, p.steps,
                 (unsigned long long)p.seed, p.lora.rank);
        rollout_session ss;
        rc = rollout_session_open(&ss, "ppo", db_path, f.json_log, f.model, config, (const char *const *)prompts, n_prompts,
                                  reward_model, HEALTH_PPO | HEALTH_ROLLOUT | HEALTH_REWARD_MODEL);
        if (!rc) {
            rollout_session_hooks(&ss, &p.stop, &p.progress, &p.progress_ctx, &p.sink, &p.sink_ctx);
            rlhf_error err = {0};
            ppo_summary s;
            int r = ppo_run(&p, &s, &err);
            rc = rollout_session_end(&ss, r, &err, f.out);
            if (rc < 0) {
                rc = 0;
                char el[32];
                if (s.start_step > 0) out_printf("resumed from the checkpoint of step %ld\n", s.start_step);
                run_log_duration(el, sizeof el, s.elapsed_s);
                out_printf("PPO on %zu prompts (%zu held out): %ld steps over %ld rollout batches in %s\n", s.n_train,
                           s.n_val, s.steps_done, s.rollouts, el);
                out_printf("objective/scores %.4f (first batch) -> %.4f (last batch); objective/kl %.4f -> %.4f "
                           "(largest %.4f); kl_coef %.4g\n",
                           s.first_score, s.last_score, s.first_kl, s.last_kl, s.max_kl, s.kl_coef);
                if (!isnan(s.val_reward_before))
                    out_printf("held-out mean reward (greedy): %.4f before, %.4f after\n", s.val_reward_before,
                               s.val_reward_after);
                if (!isnan(s.val_sampled_before))
                    out_printf("held-out mean reward (%d samples per prompt, temperature %g): %.4f before, %.4f after\n",
                               p.eval_samples, p.ppo.temperature, s.val_sampled_before, s.val_sampled_after);
                out_printf("saved %s\n", f.out);
            }
            rollout_session_close(&ss, db_path);
        }
    }
    for (size_t i = 0; i < n_prompts; i++) free(prompts[i]);
    free(prompts);
    return rc;
}
