/* cmd_grpo.c — `rlhf grpo` and `rlhf rloo`: prompts from JSONL or a database, a built-in
 * programmatic reward (--reward-fn) or a reward model (--reward), the common trainer flags plus the GRPO family's own, the run's record and the
 * held-out reward before and after. The training itself is src/train/grpo_run.c. */
#include <cjson/cJSON.h>
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
#include "src/core/fileio.h"
#include "src/train/grpo.h"

static const char *const grpo_usage =
    "rlhf grpo|rloo --model DIR (--prompts FILE.jsonl | --db FILE) (--reward-fn toy|contains:TEXT | --reward RM_DIR) "
    "--out DIR "
    "[--steps N] [--lr LR] [--missing-eos-penalty P] "
    "[--num-generations G] [--prompts-per-step P] [--max-new-tokens N] [--temperature T] [--epsilon E] "
    "[--epsilon-high E] [--beta B] [--loss-type grpo|bnpo|dr_grpo|dapo] [--scale-rewards group|batch|none] "
    "[--iterations N] [--lora-rank R ...] [--save-every N] [--resume] [--json-log FILE] [--runs-db FILE]";

static const char *const grpo_help =
    "Online policy optimisation with sampled groups: for each prompt the current policy samples G\n"
    "completions (one batched pass), a reward function scores them, and each completion's advantage\n"
    "is its reward against its group's: grpo normalises by the group's mean and std\n"
    "(--scale-rewards group|batch|none), rloo uses the leave-one-out mean of the other G - 1. The\n"
    "update is TRL's clipped objective with --epsilon (and --epsilon-high), an optional KL to the\n"
    "starting model (--beta, default 0 as in TRL, k3 estimator), losses aggregated as --loss-type\n"
    "(grpo: per completion then mean; bnpo/dapo: over all tokens; dr_grpo: / (rows x max tokens)).\n"
    "Old log-probabilities are recomputed by the training forward pass, not taken from the decoder.\n"
    "\n"
    "Prompts: JSON lines with a \"prompt\" string (rlhf world --format prompts writes them), or without\n"
    "--prompts every prompt stored in --db (a chat prompt's last user message; each once), which\n"
    "also records the run and its rollouts; rendered as a user turn through the model's chat\n"
    "template when it has one. A held-out share\n"
    "(--val-fraction) is answered greedily before and after training and its mean reward printed.\n"
    "Rewards (--reward-fn): toy = the task world's verifier (1 right, 0 wrong, -0.5 rude, -0.25\n"
    "rambling); contains:TEXT = 1 if the completion contains TEXT. Or --reward RM_DIR: a reward model\n"
    "as rlhf reward train writes it scores the prompt followed by the completion (its own tokenizer,\n"
    "read at the last token). --missing-eos-penalty P (default 0: off, as TRL) is subtracted from the\n"
    "reward of a completion that reached --max-new-tokens without EOS.\n"
    "With --runs-db FILE (or --db) every sampled completion is stored there as a generation of its prompt\n"
    "(policy, seed, decoding settings, and the reward in decoding_json's \"rollout\"), to rank in the REPL.\n"
    "Metrics (TRL's names): reward, reward_std, frac_reward_zero_std, completions/mean_length,\n"
    "completions/clipped_ratio, clip_ratio/region_mean, entropy, kl (with --beta).\n"
    "LoRA (--lora-rank R, --lora-alpha, --lora-dropout, --lora-targets): only a fresh adapter trains;\n"
    "rollouts sample from it merged into a copy of the targeted matrices (restored after each batch),\n"
    "the reference (--beta) is the base with the adapter off, and OUT is a PEFT adapter directory\n"
    "(unmerged: rlhf generate --model OUT, rlhf model merge).\n"
    "Checkpoints (every --save-every steps, at the end and on Ctrl-C) also write OUT/training_state.bin:\n"
    "the policy or adapter, AdamW moments, step and the current rollout batch. The same command with\n"
    "--resume continues the run exactly (bit-identical with one thread); other settings, prompts,\n"
    "starting model or reward are refused, naming what differs. A fresh run refuses an OUT that\n"
    "holds a training state.";

int cmd_grpo(int argc, char **argv) {
    const int rloo = strcmp(argv[0], "rloo") == 0;
    trainer_flags f;
    trainer_flags_defaults(&f);
    f.lr = 1e-6;
    f.steps = 100;
    if (command_wants_help(argc, argv)) {
        out_printf("usage: %s\n\n%s\n\n", grpo_usage, grpo_help);
        trainer_flags_print_help(&f);
        return 0;
    }
    grpo_run_params p;
    grpo_run_params_defaults(&p);
    if (rloo) p.advantage = GRPO_ADV_RLOO;
    const char *prompts_path = NULL, *reward_spec = NULL, *reward_model = NULL;
    for (int i = 1; i < argc; i++) {
        int r = trainer_flags_parse(&f, argc, argv, &i, grpo_usage);
        if (r == TRAINER_FLAGS_ERROR) return 2;
        if (r == TRAINER_FLAGS_TAKEN) continue;
        const char *a = argv[i];
        char name[32];
        const char *v;
        if (strncmp(a, "--", 2) != 0) {
            out_error("unexpected argument '%s'", a);
            out_error("usage: %s", grpo_usage);
            return 2;
        }
        if (trainer_flag_value(argc, argv, &i, name, sizeof name, &v, grpo_usage)) return 2;
        long n;
        double d;
        rlhf_error err = {0};
        if (strcmp(name, "--prompts") == 0) prompts_path = v;
        else if (strcmp(name, "--reward-fn") == 0) reward_spec = v;
        else if (strcmp(name, "--reward") == 0) reward_model = v;
        else if (strcmp(name, "--missing-eos-penalty") == 0) {
            if (trainer_flag_double(name, v, 0, 1e6, &d, grpo_usage)) return 2;
            p.missing_eos_penalty = (float)d;
        } else if (strcmp(name, "--num-generations") == 0) {
            if (trainer_flag_long(name, v, 2, &n, grpo_usage)) return 2;
            p.num_generations = (int)n;
        } else if (strcmp(name, "--prompts-per-step") == 0) {
            if (trainer_flag_long(name, v, 1, &n, grpo_usage)) return 2;
            p.prompts_per_step = (int)n;
        } else if (strcmp(name, "--max-new-tokens") == 0) {
            if (trainer_flag_long(name, v, 1, &n, grpo_usage)) return 2;
            p.max_new_tokens = (int)n;
        } else if (strcmp(name, "--iterations") == 0) {
            if (trainer_flag_long(name, v, 1, &n, grpo_usage)) return 2;
            p.iterations = (int)n;
        } else if (strcmp(name, "--temperature") == 0) {
            if (trainer_flag_double(name, v, 1e-3, 100, &d, grpo_usage)) return 2;
            p.temperature = (float)d;
        } else if (strcmp(name, "--epsilon") == 0) {
            if (trainer_flag_double(name, v, 0, 0.999, &d, grpo_usage)) return 2;
            p.grpo.epsilon = (float)d;
            p.grpo.epsilon_high = (float)d;
        } else if (strcmp(name, "--epsilon-high") == 0) {
            if (trainer_flag_double(name, v, 0, 100, &d, grpo_usage)) return 2;
            p.grpo.epsilon_high = (float)d;
        } else if (strcmp(name, "--beta") == 0) {
            if (trainer_flag_double(name, v, 0, 1e6, &d, grpo_usage)) return 2;
            p.grpo.beta = (float)d;
        } else if (strcmp(name, "--loss-type") == 0) {
            if (grpo_loss_agg_parse(v, &p.grpo.loss_agg, &err)) return out_error("--loss-type: %s", err.msg), 2;
        } else if (strcmp(name, "--scale-rewards") == 0) {
            if (grpo_scale_parse(v, &p.scale, &err)) return out_error("--scale-rewards: %s", err.msg), 2;
        } else {
            out_error("unknown flag '%s'", a);
            out_error("usage: %s", grpo_usage);
            return 2;
        }
    }
    if (!f.model) f.model = default_model_path(); /* the built-in default model, when there is one */
    if (!f.model || !f.out || (!prompts_path && !f.db) || !reward_spec == !reward_model) {
        out_error("%s: --model, --prompts (or --db), --out and one of --reward-fn or --reward are required", argv[0]);
        out_error("usage: %s", grpo_usage);
        return 2;
    }
    if (f.data) {
        out_error("%s: prompts come from --prompts FILE.jsonl or --db FILE (--data is not read by this trainer)", argv[0]);
        return 2;
    }
    const char *db_path = f.runs_db ? f.runs_db : f.db; /* --db also records the run and its rollouts */
    rlhf_error err = {0};
    if (reward_spec && reward_fn_parse(reward_spec, &p.reward, &err)) return out_error("--reward-fn: %s", err.msg), 2;
    p.reward_model = reward_model;
    char **prompts = NULL;
    size_t n_prompts = 0;
    int rc = rollout_prompts_load(prompts_path, f.db, &prompts, &n_prompts);
    if (!rc) {
        p.model_dir = f.model;
        p.prompts = (const char *const *)prompts;
        p.n_prompts = n_prompts;
        p.out_dir = f.out;
        p.steps = f.steps > 0 ? f.steps : 100;
        p.accum = f.accum;
        trainer_flags_optim(&f, &p.optim);
        p.val_fraction = f.val_fraction;
        p.seed = f.seed;
        p.save_every = f.save_every;
        p.resume = f.resume;
        trainer_flags_lora(&f, &p.lora);
        char config[1536];
        snprintf(config, sizeof config,
                 "{\"advantage\":\"%s\",\"reward_fn\":\"%s\",\"num_generations\":%d,\"prompts_per_step\":%d,"
                 "\"max_new_tokens\":%d,\"epsilon\":%g,\"epsilon_high\":%g,\"beta\":%g,\"loss_type\":\"%s\",\"lr\":%g,"
                 "\"missing_eos_penalty\":%g,\"lora_rank\":%d}",
                 rloo ? "rloo" : "grpo", reward_spec ? reward_spec : reward_model, p.num_generations, p.prompts_per_step, p.max_new_tokens,
                 p.grpo.epsilon, p.grpo.epsilon_high, p.grpo.beta, grpo_loss_agg_name(p.grpo.loss_agg), f.lr, p.missing_eos_penalty, p.lora.rank);
        rollout_session ss;
        rc = rollout_session_open(&ss, rloo ? "rloo" : "grpo", db_path, f.json_log, f.model, config,
                                  (const char *const *)prompts, n_prompts, reward_spec ? reward_spec : reward_model,
                                  HEALTH_GRPO | HEALTH_ROLLOUT | (reward_model ? HEALTH_REWARD_MODEL : 0));
        if (!rc) {
            rollout_session_hooks(&ss, &p.stop, &p.progress, &p.progress_ctx, &p.sink, &p.sink_ctx);
            grpo_summary s;
            int r = grpo_run(&p, &s, &err);
            rc = rollout_session_end(&ss, r, &err, f.out);
            if (rc < 0) {
                rc = 0;
                char el[32];
                if (s.start_step > 0) out_printf("resumed from the checkpoint of step %ld\n", s.start_step);
                run_log_duration(el, sizeof el, s.elapsed_s);
                out_printf("%s on %zu prompts (%zu held out), %d completions each: %ld steps in %s; sampled reward "
                           "%.3f (first step) -> %.3f (last step)\n",
                           rloo ? "RLOO" : "GRPO", s.n_train, s.n_val, p.num_generations, s.steps_done, el,
                           s.first_reward, s.last_reward);
                if (!isnan(s.val_reward_before))
                    out_printf("held-out mean reward (greedy): %.3f before, %.3f after\n", s.val_reward_before,
                               s.val_reward_after);
                out_printf("saved %s\n", f.out);
            }
            rollout_session_close(&ss, db_path);
        }
    }
    for (size_t i = 0; i < n_prompts; i++) free(prompts[i]);
    free(prompts);
    return rc;
}
