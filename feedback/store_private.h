/* store_private.h — what the three parts of the store share: store.c (opening, recording,
 * undo), store_query.c (datasets, statistics, agreement, leaderboards) and store_jsonl.c
 * (import/export). Not a public header. */
#ifndef RLHF_FEEDBACK_STORE_PRIVATE_H
#define RLHF_FEEDBACK_STORE_PRIVATE_H

#include "db/db.h"
#include "feedback/store.h"

struct store {
    db *d;
};

/* Inside an open transaction: the annotator's id, created if new. */
int store_annotator_id_tx(store *s, const char *name, int64_t *id, rlhf_error *err);
/* Inside an open transaction: find or add a prompt. */
int store_prompt_id_tx(store *s, const store_prompt *p, int64_t *id, rlhf_error *err);
/* 1 if `json` parses as a JSON array (0 for NULL). */
int store_json_is_array(const char *json);
/* Renders chat messages (a cJSON array of {"role","content"}) as dialogue text:
 * "\n\nHuman: ...\n\nAssistant: ..." (system -> "System", other roles as given), followed by
 * "\n\nAssistant:" when `open_turn` is 1. Returns a malloc'd string or NULL. */
char *store_render_messages(const void *cjson_array, int open_turn);
/* The generation ids chosen by store_get_sft_dataset's best-ranked rule, one per ranked
 * prompt, in prompt id order (*ids malloc'd, caller frees). */
int store_best_ranked(store *s, int64_t **ids, size_t *n, rlhf_error *err);

#endif
