/* prompt.h — building prompts: zero-, few- and multi-shot text prompts, and chat prompts
 * through a model's chat template.
 *
 * Text prompts. A prompt_template has four parts, each plain text with {input} / {output}
 * placeholders ("{{" and "}}" write literal braces):
 *   instruction   written first when not empty (a task description);
 *   example       one solved example, repeated for each (input, output) pair;
 *   separator     between consecutive parts;
 *   query         the unsolved input the model continues.
 * prompt_template_defaults gives:
 *   instruction ""   example "Input: {input}\nOutput: {output}"   separator "\n\n"
 *   query "Input: {input}\nOutput:"
 * Zero-shot is n_examples == 0, few-shot a handful, multi-shot as many as fit: all three are
 * the same call.
 *
 * Chat prompts. A chat template is the Jinja source Hugging Face keeps in tokenizer_config.json
 * ("chat_template"); jinja.h renders it (the supported subset and its limits are listed there).
 *
 * Without a template (tmpl == NULL) the documented default is the HH-RLHF dialogue format the
 * project's data uses: an optional system message followed by "\n\n", then
 * "\n\nHuman: {content}" for user turns and "\n\nAssistant: {content}" for assistant turns,
 * and "\n\nAssistant:" when a generation prompt is asked for.
 *
 * The whole prompt. prompt_assemble picks among the above from one prompt_request (chat or
 * not, examples or not, instruction, system message, the model's template and BOS habit), so
 * `rlhf generate` and the REPL build the same text for the same request. */
#ifndef RLHF_PROMPT_H
#define RLHF_PROMPT_H

#include "src/core/error.h"
#include "src/gen/jinja.h"

typedef struct {
    const char *input;
    const char *output;
} prompt_example;

typedef struct {
    const char *instruction;
    const char *example;
    const char *separator;
    const char *query;
} prompt_template;

typedef jinja_message prompt_message; /* {role, content} */

void prompt_template_defaults(prompt_template *t);

/* Builds the text prompt for `input` after n_examples solved examples. On success *out is a
 * NUL-terminated string the caller frees; RLHF_ERR_FORMAT for a template with an unknown
 * placeholder or an unmatched brace (the message names the part). */
int prompt_build(char **out, const prompt_template *t, const prompt_example *examples, int n_examples, const char *input,
                 rlhf_error *err);

/* Renders messages through `tmpl` (Jinja source; NULL for the default format above). The
 * strings are borrowed. On success *out is a new string the caller frees; errors name the
 * template line (RLHF_ERR_FORMAT for syntax, RLHF_ERR_UNSUPPORTED for Jinja this interpreter
 * lacks, RLHF_ERR_INVALID for raise_exception("...") with its message). bos_token/eos_token
 * may be NULL (then "" is used). */
int prompt_chat_render(char **out, const char *tmpl, const prompt_message *messages, int n_messages,
                       int add_generation_prompt, const char *bos_token, const char *eos_token, rlhf_error *err);

/* Few-shot as a conversation: an optional system message, each example as a user turn and an
 * assistant turn, then `input` as the last user turn, rendered with prompt_chat_render. */
int prompt_chat_fewshot(char **out, const char *tmpl, const char *system, const prompt_example *examples,
                        int n_examples, const char *input, const char *bos_token, const char *eos_token,
                        rlhf_error *err);

/* ---- the whole prompt of a generation ---- */

/* What a prompt is made of. Strings are borrowed. */
typedef struct {
    const char *input;             /* the user's text: the prompt, or the query after examples */
    int chat;                      /* 1: render as a conversation through chat_template */
    const char *system;            /* chat: system message (NULL: the instruction, if any) */
    const char *instruction;       /* task description written before the examples */
    const prompt_example *examples;/* (n_examples) solved examples */
    int n_examples;
    int few_shot;                  /* 1: an examples prompt even with no examples (zero-shot) */
    const prompt_message *history; /* chat: earlier turns (user/assistant), after the examples and
                                      before the input (the REPL's conversation); may be NULL */
    int n_history;
    const char *chat_template;     /* the model's Jinja template; NULL: the HH-RLHF format */
    const char *bos_token, *eos_token; /* token texts the template sees; may be NULL */
    int add_bos;                   /* 1: the tokenizer starts plain prompts with BOS */
} prompt_request;

/* Builds the prompt text of r: a chat conversation (system, examples as user/assistant turns,
 * the input as the last user turn) or a text prompt (instruction, Input/Output examples, the
 * query), or the input as it is. *out is a new string the caller frees; *add_bos says whether
 * the encoder should add BOS: a chat template writes its own BOS text, while plain text and the
 * template-less chat format get the tokenizer's. Errors from the template name its line. */
int prompt_assemble(char **out, int *add_bos, const prompt_request *r, rlhf_error *err);

/* Solved examples read from a JSONL file, one object a line: {"input": ..., "output": ...}
 * (or the SFT names {"prompt": ..., "completion": ...}); blank lines are skipped. */
typedef struct {
    prompt_example *items; /* (n) owned, strings owned */
    int n;
} prompt_examples;

/* Reads `path` into ex (need not be initialised). At most max_examples are kept (< 0: all).
 * RLHF_ERR_IO when the file cannot be read, RLHF_ERR_FORMAT naming FILE:LINE for bad JSON or a
 * missing/non-string field. On error ex is left empty. prompt_examples_free is safe on a
 * zeroed struct and safe twice. */
int prompt_examples_read(prompt_examples *ex, const char *path, int max_examples, rlhf_error *err);
void prompt_examples_free(prompt_examples *ex);

#endif
