/* store_kto.c — ratings (and optionally pairs) as KTO's thumbs-up/down examples (see
 * store_get_kto_dataset in store.h). */
#include <string.h>

#include "feedback/store_private.h"

typedef struct {
    kto_dataset *out;
    rlhf_error *err;
} kto_ctx;

static int add_rating(void *ctx, const db_rating_text_view *v) {
    kto_ctx *c = ctx;
    int desirable;
    if (v->score >= 4) desirable = 1;
    else if (v->score >= 1 && v->score <= 2) desirable = 0;
    else if (v->score == 0 && v->labels && *v->labels) desirable = 0; /* a flag says what is wrong */
    else return 0;                                                     /* 3: neither good nor bad */
    return kto_dataset_push(c->out, v->prompt_text, store_json_is_array(v->prompt_messages_json) ? v->prompt_messages_json : NULL,
                            v->text, desirable, v->rating_id, 0, c->err);
}

int store_get_kto_dataset(store *s, const store_kto_query *q, kto_dataset *out, rlhf_error *err) {
    kto_ctx c = {out, err};
    int rc = db_ratings_each_text(s->d, add_rating, &c, err);
    if (rc || !q || !q->with_pairs) return rc;
    pref_dataset pairs;
    pref_dataset_init(&pairs);
    store_pref_query pq = {q->include_flagged, 0, NULL};
    rc = store_get_pref_dataset(s, &pq, &pairs, err);
    if (!rc) rc = kto_dataset_from_pairs(out, &pairs, err);
    pref_dataset_free(&pairs);
    return rc;
}
