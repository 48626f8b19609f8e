/* store_query.c — reading judgements back: training datasets, counts, integrity checks,
 * agreement between annotators and Bradley–Terry leaderboards.
 *
 * Agreement and leaderboards work on one list of "pair judgements": every row of the pairs
 * table (direct or derived from a ranking) plus the tied pairs of rankings, which the pairs
 * table leaves out because they carry no preference but which do say "these two are equally
 * good". An item is an unordered pair of generations {g1 < g2}; its label is 0 (g1 better),
 * 1 (g2 better), 2 (tie) or 3 (both bad). If one annotator judged an item more than once, one
 * judgement counts: a direct pair over one derived from a ranking, then the newest. */
#include "feedback/store_private.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "feedback/agreement.h"
#include "feedback/leaderboard.h"

/* ---- counts and checks ---- */

int store_get_counts(store *s, store_counts *out, rlhf_error *err) {
    db_counts c;
    int rc = db_get_counts(s->d, &c, err);
    if (rc) return rc;
    *out = (store_counts){
        .schema_version = c.schema_version, .models = c.models, .runs = c.runs,
        .metrics = c.metrics, .prompts = c.prompts, .generations = c.generations,
        .annotators = c.annotators, .guidelines = c.guidelines, .rankings = c.rankings,
        .ranking_items = c.ranking_items, .pairs = c.pairs, .pairs_direct = c.pairs_direct,
        .pairs_derived = c.pairs_derived, .pairs_better = c.pairs_better,
        .pairs_tie = c.pairs_tie, .pairs_both_bad = c.pairs_both_bad,
        .pairs_flagged = c.pairs_flagged, .tied_pairs_excluded = c.tied_pairs_excluded,
        .ratings = c.ratings, .skips = c.skips, .audit = c.audit, .imports = c.imports,
    };
    return 0;
}

static int add_problem(void *ctx, const char *line) {
    store_check_report *r = ctx;
    char **p = realloc(r->problems, (r->n + 1) * sizeof *p);
    if (!p) return RLHF_ERR_NOMEM;
    r->problems = p;
    if (!(p[r->n] = strdup(line))) return RLHF_ERR_NOMEM;
    r->n++;
    return 0;
}

static int check_ranking(void *ctx, const db_ranking_view *v) {
    int64_t expected = (int64_t)v->k * (v->k - 1) / 2 - v->n_tied_pairs;
    if (v->n_pairs == expected) return 0;
    char line[200];
    snprintf(line, sizeof line, "ranking %lld: %lld derived pairs stored, expected k(k-1)/2 - ties = %lld",
             (long long)v->ranking_id, (long long)v->n_pairs, (long long)expected);
    return add_problem(ctx, line);
}

int store_check(store *s, store_check_report *out, rlhf_error *err) {
    memset(out, 0, sizeof *out);
    int rc = db_check_integrity(s->d, add_problem, out, err);
    if (!rc) rc = db_rankings_each(s->d, check_ranking, out, err);
    if (rc == RLHF_ERR_NOMEM) rlhf_errorf(err, rc, "check: out of memory");
    if (rc) store_check_report_free(out);
    return rc;
}

void store_check_report_free(store_check_report *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) free(r->problems[i]);
    free(r->problems);
    memset(r, 0, sizeof *r);
}

/* ---- preference pairs ---- */

typedef struct {
    const store_pref_query *q;
    pref_dataset *out;
    rlhf_error *err;
} pref_ctx;

static int add_pref(void *ctx, const db_pair_view *v) {
    pref_ctx *c = ctx;
    if (!v->row.verdict || strcmp(v->row.verdict, "better") != 0) return 0;
    if (v->row.flags && !c->q->include_flagged) return 0;
    if (c->q->annotator && (!v->annotator || strcmp(c->q->annotator, v->annotator) != 0)) return 0;
    double weight = v->row.weight;
    if (c->q->normalize_rankings && v->ranking_k >= 2) weight /= (double)v->ranking_k * (v->ranking_k - 1) / 2.0;
    return pref_dataset_push(c->out, v->prompt_text, v->prompt_messages_json, v->chosen_text,
                             v->rejected_text, weight, v->row.margin, v->annotator, v->pair_id, c->err);
}

int store_get_pref_dataset(store *s, const store_pref_query *q, pref_dataset *out,
                           rlhf_error *err) {
    store_pref_query defaults = {0, 0, NULL};
    pref_ctx c = {q ? q : &defaults, out, err};
    return db_pairs_each(s->d, 1, add_pref, &c, err);
}

/* ---- SFT examples ---- */

typedef struct {
    int64_t prompt_id, generation_id;
    int firsts;   /* times ranked first */
    int sum_rank; /* for the mean rank */
    int n;
} rank_tally;

typedef struct {
    rank_tally *items;
    size_t n, cap;
    int failed;
} tally_list;

static int tally_item(void *ctx, const db_ranking_item_view *v) {
    tally_list *t = ctx;
    if (v->flags) return 0; /* a flagged ranking is not trusted as a demonstration */
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        rank_tally *p = realloc(t->items, cap * sizeof *p);
        if (!p) return RLHF_ERR_NOMEM;
        t->items = p;
        t->cap = cap;
    }
    t->items[t->n++] = (rank_tally){v->prompt_id, v->generation_id, v->rank == 1, v->rank, 1};
    return 0;
}

static int by_prompt_generation(const void *a, const void *b) {
    const rank_tally *x = a, *y = b;
    if (x->prompt_id != y->prompt_id) return x->prompt_id < y->prompt_id ? -1 : 1;
    return (x->generation_id > y->generation_id) - (x->generation_id < y->generation_id);
}

/* x ranks better than y: ranked first more often, then a better mean rank, then older. */
static int better_tally(const rank_tally *x, const rank_tally *y) {
    if (x->firsts != y->firsts) return x->firsts > y->firsts;
    double mx = (double)x->sum_rank / x->n, my = (double)y->sum_rank / y->n;
    if (mx != my) return mx < my;
    return x->generation_id < y->generation_id;
}

int store_best_ranked(store *s, int64_t **ids, size_t *n_ids, rlhf_error *err) {
    *ids = NULL;
    *n_ids = 0;
    tally_list t = {0};
    int rc = db_ranking_items_each(s->d, tally_item, &t, err);
    if (rc) {
        if (rc == RLHF_ERR_NOMEM) rlhf_errorf(err, rc, "best-ranked: out of memory");
        free(t.items);
        return rc;
    }
    if (t.n > 1) qsort(t.items, t.n, sizeof *t.items, by_prompt_generation);
    /* merge repeated (prompt, generation) tallies in place */
    size_t m = 0;
    for (size_t i = 0; i < t.n; i++) {
        if (m && t.items[m - 1].prompt_id == t.items[i].prompt_id &&
            t.items[m - 1].generation_id == t.items[i].generation_id) {
            t.items[m - 1].firsts += t.items[i].firsts;
            t.items[m - 1].sum_rank += t.items[i].sum_rank;
            t.items[m - 1].n += t.items[i].n;
        } else {
            t.items[m++] = t.items[i];
        }
    }
    int64_t *out = malloc((m ? m : 1) * sizeof *out);
    if (!out) {
        free(t.items);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "best-ranked: out of memory");
    }
    size_t n = 0;
    for (size_t i = 0; i < m;) {
        size_t best = i, j = i;
        for (; j < m && t.items[j].prompt_id == t.items[i].prompt_id; j++)
            if (better_tally(&t.items[j], &t.items[best])) best = j;
        out[n++] = t.items[best].generation_id;
        i = j;
    }
    free(t.items);
    *ids = out;
    *n_ids = n;
    return 0;
}

typedef struct {
    sft_dataset *out;
    rlhf_error *err;
    int skip_flagged;
} sft_ctx;

static int add_sft(void *ctx, const db_generation_view *v) {
    sft_ctx *c = ctx;
    if (c->skip_flagged && v->flags) return 0;
    return sft_dataset_push(c->out, v->prompt_text, v->prompt_messages_json, v->text, 1.0,
                            v->generation_id, c->err);
}

int store_get_sft_dataset(store *s, const store_sft_query *q, sft_dataset *out, rlhf_error *err) {
    sft_ctx c = {out, err, 1};
    int rc = 0;
    if (!q || !q->skip_demos) rc = db_generations_each(s->d, "demo", add_sft, &c, err);
    if (rc || (q && q->skip_best_ranked)) return rc;
    int64_t *ids = NULL;
    size_t n = 0;
    if ((rc = store_best_ranked(s, &ids, &n, err))) return rc;
    for (size_t i = 0; i < n && !rc; i++) rc = db_generation_get(s->d, ids[i], add_sft, &c, err);
    free(ids);
    return rc;
}

/* ---- pair judgements for agreement and leaderboards ---- */

/* Interned names (annotators, models, strategies): index <-> string. */
typedef struct {
    char **names;
    size_t n, cap;
} name_table;

static int intern(name_table *t, const char *name) {
    if (!name) return -1;
    for (size_t i = t->n; i-- > 0;)
        if (strcmp(t->names[i], name) == 0) return (int)i;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **p = realloc(t->names, cap * sizeof *p);
        if (!p) return -2;
        t->names = p;
        t->cap = cap;
    }
    if (!(t->names[t->n] = strdup(name))) return -2;
    return (int)t->n++;
}

static void name_table_free(name_table *t) {
    for (size_t i = 0; i < t->n; i++) free(t->names[i]);
    free(t->names);
    memset(t, 0, sizeof *t);
}

typedef struct {
    int64_t g1, g2;  /* g1 < g2 */
    int annotator;   /* index in the annotator table */
    int label;       /* 0 g1 better, 1 g2 better, 2 tie, 3 both bad */
    int direct;      /* 1 for a pair recorded directly */
    int64_t order;   /* pair id or ranking id: larger is newer within a kind */
    int player1, player2; /* index in the player table of g1's and g2's model/strategy, -1 none */
} judgement;

typedef struct {
    judgement *items;
    size_t n, cap;
    name_table annotators, players;
    store_by by;
    int failed;
    /* ranking being collected (for its tied pairs) */
    int64_t ranking_id;
    int ranking_annotator;
    int n_ranked;
    int64_t ranked_gen[64];
    int ranked_rank[64];
    int ranked_player[64];
} judgement_list;

static int push_judgement(judgement_list *l, judgement j) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        judgement *p = realloc(l->items, cap * sizeof *p);
        if (!p) return RLHF_ERR_NOMEM;
        l->items = p;
        l->cap = cap;
    }
    l->items[l->n++] = j;
    return 0;
}

static int collect_pair(void *ctx, const db_pair_view *v) {
    judgement_list *l = ctx;
    int a = intern(&l->annotators, v->annotator ? v->annotator : "?");
    const char *chosen_player = l->by == STORE_BY_MODEL ? v->chosen_model : v->chosen_strategy;
    const char *rejected_player = l->by == STORE_BY_MODEL ? v->rejected_model : v->rejected_strategy;
    int pc = intern(&l->players, chosen_player), pr = intern(&l->players, rejected_player);
    if (a == -2 || pc == -2 || pr == -2) return RLHF_ERR_NOMEM;
    int chosen_first = v->row.chosen_id < v->row.rejected_id;
    int label = 2;
    if (strcmp(v->row.verdict, "better") == 0) label = chosen_first ? 0 : 1;
    else if (strcmp(v->row.verdict, "both_bad") == 0) label = 3;
    judgement j = {
        .g1 = chosen_first ? v->row.chosen_id : v->row.rejected_id,
        .g2 = chosen_first ? v->row.rejected_id : v->row.chosen_id,
        .annotator = a,
        .label = label,
        .direct = v->row.ranking_id == 0,
        .order = v->row.ranking_id ? v->row.ranking_id : v->pair_id,
        .player1 = chosen_first ? pc : pr,
        .player2 = chosen_first ? pr : pc,
    };
    return push_judgement(l, j);
}

/* Emits the tied pairs of the ranking collected so far. */
static int flush_ranking(judgement_list *l) {
    for (int i = 0; i < l->n_ranked; i++)
        for (int k = i + 1; k < l->n_ranked; k++) {
            if (l->ranked_rank[i] != l->ranked_rank[k]) continue;
            int first = l->ranked_gen[i] < l->ranked_gen[k];
            judgement j = {
                .g1 = first ? l->ranked_gen[i] : l->ranked_gen[k],
                .g2 = first ? l->ranked_gen[k] : l->ranked_gen[i],
                .annotator = l->ranking_annotator,
                .label = 2,
                .direct = 0,
                .order = l->ranking_id,
                .player1 = first ? l->ranked_player[i] : l->ranked_player[k],
                .player2 = first ? l->ranked_player[k] : l->ranked_player[i],
            };
            int rc = push_judgement(l, j);
            if (rc) return rc;
        }
    l->n_ranked = 0;
    return 0;
}

static int collect_ranking_item(void *ctx, const db_ranking_item_view *v) {
    judgement_list *l = ctx;
    int rc = 0;
    if (v->ranking_id != l->ranking_id && (rc = flush_ranking(l))) return rc;
    l->ranking_id = v->ranking_id;
    int a = intern(&l->annotators, v->annotator ? v->annotator : "?");
    int p = intern(&l->players, l->by == STORE_BY_MODEL ? v->model : v->strategy);
    if (a == -2 || p == -2) return RLHF_ERR_NOMEM;
    l->ranking_annotator = a;
    if (l->n_ranked < 64) {
        l->ranked_gen[l->n_ranked] = v->generation_id;
        l->ranked_rank[l->n_ranked] = v->rank;
        l->ranked_player[l->n_ranked] = p;
        l->n_ranked++;
    }
    return 0;
}

/* Sort key: item, annotator, then the judgement that counts first. */
static int by_item_annotator(const void *a, const void *b) {
    const judgement *x = a, *y = b;
    if (x->g1 != y->g1) return x->g1 < y->g1 ? -1 : 1;
    if (x->g2 != y->g2) return x->g2 < y->g2 ? -1 : 1;
    if (x->annotator != y->annotator) return x->annotator < y->annotator ? -1 : 1;
    if (x->direct != y->direct) return x->direct > y->direct ? -1 : 1;
    return (x->order < y->order) - (x->order > y->order);
}

static void judgement_list_free(judgement_list *l) {
    free(l->items);
    name_table_free(&l->annotators);
    name_table_free(&l->players);
    memset(l, 0, sizeof *l);
}

/* Every pair judgement, one per (item, annotator), sorted by item then annotator. */
static int collect_judgements(store *s, store_by by, judgement_list *l, rlhf_error *err) {
    memset(l, 0, sizeof *l);
    l->by = by;
    int rc = db_pairs_each(s->d, 0, collect_pair, l, err);
    if (!rc) rc = db_ranking_items_each(s->d, collect_ranking_item, l, err);
    if (!rc) rc = flush_ranking(l);
    if (rc) {
        if (rc == RLHF_ERR_NOMEM) rlhf_errorf(err, rc, "reading judgements: out of memory");
        judgement_list_free(l);
        return rc;
    }
    if (l->n > 1) qsort(l->items, l->n, sizeof *l->items, by_item_annotator);
    size_t m = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (m && l->items[m - 1].g1 == l->items[i].g1 && l->items[m - 1].g2 == l->items[i].g2 &&
            l->items[m - 1].annotator == l->items[i].annotator)
            continue; /* the first of a group is the one that counts */
        l->items[m++] = l->items[i];
    }
    l->n = m;
    return 0;
}

/* ---- agreement ---- */

typedef struct {
    int a, b;    /* annotator indices, a < b */
    int *la, *lb;
    size_t n, cap;
} rater_pair;

int store_get_agreement(store *s, store_agreement *out, rlhf_error *err) {
    memset(out, 0, sizeof *out);
    out->alpha = NAN;
    judgement_list l;
    int rc = collect_judgements(s, STORE_BY_MODEL, &l, err);
    if (rc) return rc;
    rater_pair *rp = NULL;
    size_t n_rp = 0;
    agreement_value *values = malloc((l.n ? l.n : 1) * sizeof *values);
    char *seen = calloc(l.annotators.n ? l.annotators.n : 1, 1);
    size_t n_values = 0, unit = 0;
    if (!values || !seen) goto nomem;
    for (size_t i = 0; i < l.n;) {
        size_t j = i;
        while (j < l.n && l.items[j].g1 == l.items[i].g1 && l.items[j].g2 == l.items[i].g2) j++;
        if (j - i >= 2) {
            out->n_items++;
            for (size_t x = i; x < j; x++) {
                values[n_values++] = (agreement_value){unit, l.items[x].label};
                seen[l.items[x].annotator] = 1;
                for (size_t y = x + 1; y < j; y++) {
                    int a = l.items[x].annotator, b = l.items[y].annotator;
                    int la = l.items[x].label, lb = l.items[y].label;
                    if (a > b) {
                        int t = a; a = b; b = t;
                        t = la; la = lb; lb = t;
                    }
                    size_t k = 0;
                    while (k < n_rp && !(rp[k].a == a && rp[k].b == b)) k++;
                    if (k == n_rp) {
                        rater_pair *p = realloc(rp, (n_rp + 1) * sizeof *p);
                        if (!p) goto nomem;
                        rp = p;
                        rp[n_rp++] = (rater_pair){a, b, NULL, NULL, 0, 0};
                    }
                    rater_pair *r = &rp[k];
                    if (r->n == r->cap) {
                        size_t cap = r->cap ? r->cap * 2 : 32;
                        int *na = realloc(r->la, cap * sizeof *na);
                        if (!na) goto nomem;
                        r->la = na;
                        int *nb = realloc(r->lb, cap * sizeof *nb);
                        if (!nb) goto nomem;
                        r->lb = nb;
                        r->cap = cap;
                    }
                    r->la[r->n] = la;
                    r->lb[r->n] = lb;
                    r->n++;
                }
            }
            unit++;
        }
        i = j;
    }
    out->alpha = agreement_krippendorff_alpha(values, n_values, 4, &out->n_judgements);
    for (size_t a = 0; a < l.annotators.n; a++) out->n_annotators += seen[a];
    if (n_rp && !(out->pairs = calloc(n_rp, sizeof *out->pairs))) goto nomem;
    for (size_t k = 0; k < n_rp; k++) {
        store_kappa *q = &out->pairs[k];
        q->annotator_a = strdup(l.annotators.names[rp[k].a]);
        q->annotator_b = strdup(l.annotators.names[rp[k].b]);
        out->n_pairs++;
        if (!q->annotator_a || !q->annotator_b) goto nomem;
        q->n_items = rp[k].n;
        q->kappa = agreement_cohen_kappa(rp[k].la, rp[k].lb, rp[k].n, 4, &q->observed);
    }
    for (size_t k = 0; k < n_rp; k++) {
        free(rp[k].la);
        free(rp[k].lb);
    }
    free(rp);
    free(values);
    free(seen);
    judgement_list_free(&l);
    return 0;
nomem:
    for (size_t k = 0; k < n_rp; k++) {
        free(rp[k].la);
        free(rp[k].lb);
    }
    free(rp);
    free(values);
    free(seen);
    judgement_list_free(&l);
    store_agreement_free(out);
    return rlhf_errorf(err, RLHF_ERR_NOMEM, "agreement: out of memory");
}

void store_agreement_free(store_agreement *a) {
    if (!a) return;
    for (size_t i = 0; i < a->n_pairs; i++) {
        free(a->pairs[i].annotator_a);
        free(a->pairs[i].annotator_b);
    }
    free(a->pairs);
    memset(a, 0, sizeof *a);
    a->alpha = NAN;
}

/* ---- leaderboard ---- */

static int by_theta(const void *a, const void *b) {
    const store_leaderboard_row *x = a, *y = b;
    if (x->theta != y->theta) return x->theta > y->theta ? -1 : 1;
    return strcmp(x->name, y->name);
}

int store_get_leaderboard(store *s, const store_leaderboard_params *p, store_leaderboard *out,
                          rlhf_error *err) {
    memset(out, 0, sizeof *out);
    store_leaderboard_params defaults = {STORE_BY_MODEL, 0, 0, -1};
    if (!p) p = &defaults;
    int n_samples = p->n_bootstrap > 0 ? p->n_bootstrap : 1000;
    double prior = p->prior < 0 ? 1.0 : p->prior;
    judgement_list l;
    int rc = collect_judgements(s, p->by, &l, err);
    if (rc) return rc;
    size_t P = l.players.n;
    leaderboard_game *games = malloc((l.n ? l.n : 1) * sizeof *games);
    double *theta = malloc((P ? P : 1) * sizeof *theta), *lo = malloc((P ? P : 1) * sizeof *lo);
    double *hi = malloc((P ? P : 1) * sizeof *hi);
    if (!games || !theta || !lo || !hi) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "leaderboard: out of memory");
        goto done;
    }
    if (P && !(out->rows = calloc(P, sizeof *out->rows))) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "leaderboard: out of memory");
        goto done;
    }
    for (size_t i = 0; i < P; i++) {
        out->rows[i].name = l.players.names[i];
        l.players.names[i] = NULL; /* moved to the row */
    }
    out->n = P;
    size_t n_games = 0;
    for (size_t i = 0; i < l.n; i++) {
        const judgement *j = &l.items[i];
        if (j->player1 < 0 || j->player2 < 0 || j->player1 == j->player2) {
            out->n_ignored++;
            continue;
        }
        double score1 = j->label == 0 ? 1.0 : j->label == 1 ? 0.0 : 0.5;
        games[n_games++] = (leaderboard_game){j->player1, j->player2, score1};
        out->rows[j->player1].games += 1;
        out->rows[j->player2].games += 1;
        out->rows[j->player1].wins += score1;
        out->rows[j->player2].wins += 1.0 - score1;
    }
    out->n_games = n_games;
    if (P) {
        if ((rc = leaderboard_fit(games, n_games, (int)P, prior, theta, err))) goto done;
        if ((rc = leaderboard_bootstrap(games, n_games, (int)P, prior, n_samples, p->seed, 0.95, lo, hi, err)))
            goto done;
    }
    for (size_t i = 0; i < P; i++) {
        store_leaderboard_row *r = &out->rows[i];
        r->win_rate = r->games > 0 ? r->wins / r->games : NAN;
        r->theta = theta[i];
        r->elo = leaderboard_elo(theta[i]);
        r->elo_lo = leaderboard_elo(lo[i]);
        r->elo_hi = leaderboard_elo(hi[i]);
    }
    /* a player seen only in ignored judgements (against itself) has no record to show */
    size_t kept = 0;
    for (size_t i = 0; i < out->n; i++) {
        if (out->rows[i].games > 0) out->rows[kept++] = out->rows[i];
        else free(out->rows[i].name);
    }
    out->n = kept;
    if (out->n > 1) qsort(out->rows, out->n, sizeof *out->rows, by_theta);
done:
    free(games);
    free(theta);
    free(lo);
    free(hi);
    judgement_list_free(&l);
    if (rc) store_leaderboard_free(out);
    return rc;
}

void store_leaderboard_free(store_leaderboard *l) {
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) free(l->rows[i].name);
    free(l->rows);
    memset(l, 0, sizeof *l);
}
