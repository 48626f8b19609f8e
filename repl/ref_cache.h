/* ref_cache.h — the preference trainers' (dpo, kto) reference log-probability cache kept in the
 * feedback database: pref_run.h's row cache over the store's ref_logps table (keyed by the
 * reference's fingerprint and each row's exact ids and loss mask), and the line every run
 * prints about it. */
#ifndef RLHF_REPL_REF_CACHE_H
#define RLHF_REPL_REF_CACHE_H

#include <stddef.h>

#include "feedback/store.h"
#include "src/train/pref_run.h"

/* The row cache in s (borrowed: it must stay open while the cache is used). */
pref_ref_cache ref_cache_in_store(store *s);

/* "reference log-probs: N cached, M computed (database DB_PATH)", or with db_path NULL
 * "(... OUT_DIR/ref_logps.bin)"; nothing when no row was looked at. */
void ref_cache_print(size_t cached, size_t computed, const char *db_path, const char *out_dir);

#endif
