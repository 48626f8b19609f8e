/* dataset.h — the plain training-data structs the trainers consume.
 *
 * These are what the feedback store hands to the engine (and what a trainer can build from
 * any other source): preference pairs for reward modelling and DPO, and prompt/completion
 * examples for SFT. No SQLite, no JSON: owned C strings in growable arrays.
 *
 * Lifecycle: x_init zeroes, x_push copies the strings it is given (the caller keeps its own),
 * x_free releases everything and is safe on a zeroed or already freed dataset. */
#ifndef RLHF_DATASET_H
#define RLHF_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"

typedef struct {
    char *prompt;          /* the prompt as text (for chat prompts, a plain rendering) */
    char *prompt_messages; /* chat prompts: JSON array of {"role","content"}, else NULL */
    char *chosen;          /* the preferred response */
    char *rejected;        /* the other response */
    double weight;         /* how much this pair counts in the loss (1 unless normalised) */
    double margin;         /* preference strength: rank distance in a ranking, or as recorded */
    char *annotator;       /* who judged, NULL if unknown */
    int64_t id;            /* the source row (pair id in the store), 0 if none */
} pref_pair;

typedef struct {
    pref_pair *pairs; /* (n) */
    size_t n;
    size_t cap;
} pref_dataset;

void pref_dataset_init(pref_dataset *d);
void pref_dataset_free(pref_dataset *d);
/* Appends copies of the strings (prompt_messages and annotator may be NULL). */
int pref_dataset_push(pref_dataset *d, const char *prompt, const char *prompt_messages,
                      const char *chosen, const char *rejected, double weight, double margin,
                      const char *annotator, int64_t id, rlhf_error *err);

typedef struct {
    char *prompt;          /* the prompt as text */
    char *prompt_messages; /* chat prompts: JSON array of {"role","content"}, else NULL */
    char *completion;      /* the response to imitate */
    double weight;         /* 1 unless stated */
    int64_t id;            /* the source row (generation id in the store), 0 if none */
} sft_example;

typedef struct {
    sft_example *examples; /* (n) */
    size_t n;
    size_t cap;
} sft_dataset;

void sft_dataset_init(sft_dataset *d);
void sft_dataset_free(sft_dataset *d);
/* Appends copies of the strings (prompt_messages may be NULL). */
int sft_dataset_push(sft_dataset *d, const char *prompt, const char *prompt_messages,
                     const char *completion, double weight, int64_t id, rlhf_error *err);

/* One unpaired judgement (KTO): a completion of a prompt marked desirable (thumbs up) or not. */
typedef struct {
    char *prompt;          /* the prompt as text */
    char *prompt_messages; /* chat prompts: JSON array of {"role","content"}, else NULL */
    char *completion;      /* the judged response */
    int desirable;         /* 1 thumbs up, 0 thumbs down */
    int64_t id;            /* the source row (rating or pair id in the store), 0 if none */
    long line;             /* 1-based line of a JSONL source, 0 if none */
} kto_example;

typedef struct {
    kto_example *examples; /* (n) */
    size_t n;
    size_t cap;
} kto_dataset;

void kto_dataset_init(kto_dataset *d);
void kto_dataset_free(kto_dataset *d);
/* Appends copies of the strings (prompt_messages may be NULL). */
int kto_dataset_push(kto_dataset *d, const char *prompt, const char *prompt_messages,
                     const char *completion, int desirable, int64_t id, long line, rlhf_error *err);
/* TRL's unpair_preference_dataset: each pair gives its chosen reply as a desirable example and
 * its rejected reply as an undesirable one (appended to out). */
int kto_dataset_from_pairs(kto_dataset *out, const pref_dataset *pairs, rlhf_error *err);

#endif
