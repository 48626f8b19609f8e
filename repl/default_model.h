/* default_model.h — where the built-in default model lives (models/default, made by
 * scripts/make_default_model.sh and shipped in the repository), for the commands that load it
 * when --model is left out: rlhf chat, rlhf generate, rlhf dpo, rlhf grpo/rloo. */
#ifndef RLHF_REPL_DEFAULT_MODEL_H
#define RLHF_REPL_DEFAULT_MODEL_H

/* $RLHF_DEFAULT_MODEL if set (empty: no default model), else models/default of the source tree
 * this rlhf was built from, else models/default two directories above the executable (the
 * build/repl/rlhf of a clone). NULL when none of them holds a model. Static storage. */
const char *default_model_path(void);

#endif
