/* world_prompt.h — a task-world prompt put to a model as `rlhf chat` and `rlhf generate` put it:
 * a user turn through the model's chat template when it has one (else the text itself), with
 * optional solved examples, encoded with the model's BOS habit. Used by rlhf eval and
 * rlhf annotate, so both ask the model exactly what a person would see asked in the REPL. */
#ifndef RLHF_REPL_WORLD_PROMPT_H
#define RLHF_REPL_WORLD_PROMPT_H

#include "src/core/error.h"
#include "src/formats/model_load.h"
#include "src/gen/prompt.h"
#include "src/tok/tokenizer.h"

/* *text (may be NULL: not wanted) gets the rendered prompt (the caller frees it), *ids its
 * tokens (tok_ids_free); *chat says whether the chat template was used. */
int world_prompt_encode(const model_bundle *b, const char *prompt, const prompt_example *shots, int n_shots,
                        char **text, tok_ids *ids, int *chat, rlhf_error *err);

#endif
