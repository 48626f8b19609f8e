/* world.h — the project's own checkable task world: a seeded generator of instruction/response
 * pairs in families whose answers a verifier checks, plus narrative text for pre-training.
 *
 * Everything here is written by the project (templates, word lists, the capitals table, the
 * dictionary); nothing is copied from a dataset.
 *
 * Instances. Family f's instance i of a split is a pure function of (f, split, i): drawn from an
 * rng seeded by them until its prompt's hash falls in that split (80% train, 10% val, 10% test
 * of the prompt space), so the splits never share an instance, by construction.
 *
 * Verification needs only the prompt text and the response: each family parses its own prompt
 * (every phrasing is a template whose slots are recovered by matching its literal parts), so a
 * prompt stored in the database or typed in the REPL can be checked, and GRPO's --reward-fn can
 * score any completion of a world prompt.
 *
 * Flaws. The SFT data of the default model holds imperfect answers on purpose (so feedback has
 * something to fix): with world_flaws, an example's completion is made wrong, rambling, rude or
 * never-ending at the stated rates, and the record says which. */
#ifndef RLHF_WORLD_H
#define RLHF_WORLD_H

#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"

typedef enum { WORLD_SPLIT_TRAIN = 0, WORLD_SPLIT_VAL = 1, WORLD_SPLIT_TEST = 2 } world_split;

/* What a response does wrong (bits); 0 is a good answer. */
enum {
    WORLD_FLAW_WRONG = 1u << 0,    /* the answer is not the right one */
    WORLD_FLAW_RAMBLING = 1u << 1, /* right or not, it goes on well past the answer */
    WORLD_FLAW_RUDE = 1u << 2,     /* it insults the asker */
    WORLD_FLAW_ENDLESS = 1u << 3,  /* it never stops (the SFT example has no end: trained without
                                      EOS and continued with another turn) */
};

#define WORLD_TEXT_MAX 512

typedef struct {
    int family;                    /* index into the family table */
    char prompt[WORLD_TEXT_MAX];   /* the instruction */
    char answer[WORLD_TEXT_MAX];   /* the reference response (a good answer) */
} world_item;

typedef struct {
    int correct;          /* the response gives the right answer (classification: the right label) */
    unsigned flaws;       /* WORLD_FLAW_* seen in the response text (ENDLESS is the caller's to set
                             from the finish reason) */
    double reward;        /* the verifier reward: 1 correct, 0 not; -0.5 for rude; -0.25 for
                             rambling (so GRPO prefers concise, polite, right answers) */
    char expected[WORLD_TEXT_MAX]; /* the right answer as the verifier sees it */
    char got[WORLD_TEXT_MAX];      /* what it read from the response */
} world_verdict;

/* The families, in a fixed order. */
int world_family_count(void);
const char *world_family_name(int family);
/* "classification" families (sentiment, spam) get precision/recall/F1 in evaluation; NULL-
 * terminated label list, or NULL for the others. */
const char *const *world_family_labels(int family);
/* Index of a family name, or -1. */
int world_family_find(const char *name);
int world_split_parse(const char *name, world_split *out, rlhf_error *err);
const char *world_split_name(world_split s);

/* Instance `index` of a family and split (deterministic; see the top of the file). */
int world_item_make(int family, world_split split, uint64_t index, world_item *out, rlhf_error *err);

/* The family a prompt belongs to (it parses as one of that family's phrasings), or -1. */
int world_prompt_family(const char *prompt);

/* Checks a response to a world prompt. RLHF_ERR_INVALID if the prompt is not one of the world's. */
int world_verify(const char *prompt, const char *response, world_verdict *out, rlhf_error *err);

/* A deliberately flawed completion for an item: flaw is one WORLD_FLAW_* bit; the text goes to
 * out[size]. ENDLESS gives the answer continued by an invented next turn (the caller trains it
 * without EOS). */
void world_flawed_answer(const world_item *item, unsigned flaw, uint64_t seed, char *out, size_t size);

/* Rates of flawed SFT examples (fractions; their sum < 1). */
typedef struct {
    double wrong, rambling, rude, endless;
} world_flaws;
void world_flaws_defaults(world_flaws *f); /* wrong 0.20, rambling 0.10, rude 0.10, endless 0.10 */

/* A few sentences of narrative text (seeded): characters, places and small events. out gets
 * NUL-terminated text of at most size - 1 bytes. */
void world_story(uint64_t seed, char *out, size_t size);

#endif
