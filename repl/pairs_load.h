/* pairs_load.h — preference pairs for the pair trainers (reward, dpo): from a JSONL file (TRL's
 * {"prompt","chosen","rejected"} or Anthropic HH's {"chosen","rejected"}, imported through the
 * feedback store's importer into a private in-memory database, so every format and every error
 * message is the importer's) or from the feedback database (its strict preferences; ties and
 * both-bad judgements are not pairs). */
#ifndef RLHF_REPL_PAIRS_LOAD_H
#define RLHF_REPL_PAIRS_LOAD_H

#include "src/train/dataset.h"

/* Exactly one of data / db. format: "trl", "hh" or NULL (guessed from the first line: a
 * "prompt" field means TRL). Prints what is wrong and returns the exit status (1 or 2), or 0
 * with out holding at least one pair. */
int pairs_load(const char *data, const char *db, const char *format, pref_dataset *out);

#endif
