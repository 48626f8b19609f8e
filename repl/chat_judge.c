/* chat_judge.c — the REPL's side of the feedback store (feedback/store.h): candidates are saved
 * (prompt, generations with their decoding settings and seeds) the first time one is judged,
 * then every judgement is saved at once and the REPL says so. Blind mode, the annotation queue
 * (/next, /progress), statistics, leaderboards, import/export and the training commands live
 * here too. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "feedback/ranking.h"
#include "repl/chat.h"
#include "repl/out.h"
#include "src/core/fileio.h"

int chat_store_open(chat_session *s) {
    if (s->db) return 0;
    rlhf_error err = {0};
    if (store_open(&s->db, s->db_path, &err)) return chat_fail_err(s, &err);
    return 0;
}

static store_judge judge_of(const chat_session *s) {
    store_judge j = {0};
    j.annotator = s->annotator;
    j.guideline_version = s->guideline_version;
    j.guideline_text = s->guideline_text;
    j.comment = s->comment;
    return j;
}

/* Saves the prompt and every shown candidate not saved yet. */
static int store_cands(chat_session *s) {
    if (!s->n_cands) return chat_fail(s, RLHF_ERR_INVALID, "no candidates to judge: /candidates N, /compare SPECS or /next");
    int rc = chat_store_open(s);
    if (rc) return rc;
    rlhf_error err = {0};
    if (!s->prompt_id) {
        store_prompt p = {s->prompt_text, s->prompt_template, s->prompt_examples_json, s->prompt_messages_json, NULL};
        if (store_add_prompt(s->db, &p, &s->prompt_id, &err)) return chat_fail_err(s, &err);
    }
    for (int i = 0; i < s->n_cands; i++) {
        chat_cand *c = &s->cands[i];
        if (c->generation_id) continue;
        if (c->model) {
            int64_t mid = 0;
            if (store_find_model(s->db, c->model, &mid, &err)) return chat_fail_err(s, &err);
            if (!mid) {
                store_model m = {c->model, s->model_path, s->loaded ? model_family_name(s->b.m.config.family) : NULL,
                                 NULL, NULL, 0};
                if (store_add_model(s->db, &m, &mid, &err)) return chat_fail_err(s, &err);
            }
        }
        store_generation g = {0};
        g.prompt_id = s->prompt_id;
        g.model = c->model;
        g.text = c->text;
        g.n_tokens = c->n_ids;
        g.token_ids = c->ids;
        g.n_token_ids = (size_t)c->n_ids;
        g.decoding_json = c->decoding_json;
        g.strategy = c->strategy;
        g.has_seed = c->has_seed;
        g.seed = c->seed;
        g.logprob = c->logprob;
        g.latency_ms = c->ms;
        if (store_add_generation(s->db, &g, &c->generation_id, &err)) return chat_fail_err(s, &err);
    }
    return 0;
}

/* After a saved judgement: the comment is used up, hidden origins are revealed. */
static void after_judgement(chat_session *s, const store_added *a) {
    free(s->comment);
    s->comment = NULL;
    s->judged = 1;
    if (a->warning[0]) out_printf("%snote: %s%s\n", chat_dim(s), a->warning, chat_reset(s));
    if (s->hidden) {
        s->hidden = 0;
        out_printf("revealed:");
        for (int i = 0; i < s->n_cands; i++)
            out_printf(" %c = %s%s%s%s", 'A' + i, s->cands[i].origin ? s->cands[i].origin : "?",
                       s->cands[i].model ? " [" : "", s->cands[i].model ? s->cands[i].model : "", s->cands[i].model ? "]" : "");
        out_printf("\n");
    }
}

static int labels_index(chat_session *s, const char *w, int *i) {
    rlhf_error err = {0};
    if (chat_label_index(w, s->n_cands, i, &err)) return chat_fail_err(s, &err);
    return 0;
}

int chat_rank_text(chat_session *s, const char *spec) {
    int ranks[CHAT_MAX_CANDS];
    rlhf_error err = {0};
    if (s->n_cands < 2) return chat_fail(s, RLHF_ERR_INVALID, "a ranking needs two or more candidates (/candidates N or /compare)");
    if (ranking_parse(spec, s->n_cands, ranks, &err)) return chat_fail(s, err.code, "/rank: %s", err.msg);
    int rc = store_cands(s);
    if (rc) return rc;
    int64_t ids[CHAT_MAX_CANDS];
    for (int i = 0; i < s->n_cands; i++) ids[i] = s->cands[i].generation_id;
    store_judge j = judge_of(s);
    store_added a;
    if (store_add_ranking(s->db, &j, ids, ranks, s->n_cands, &a, &err)) return chat_fail_err(s, &err);
    char norm[128];
    ranking_format(ranks, s->n_cands, norm, sizeof norm);
    out_printf("saved ranking #%lld (%s), %zu pairs%s\n", (long long)a.id, norm, a.n_pairs,
               a.n_tied ? "" : "");
    if (a.n_tied) out_printf("%s%zu tied pairs carry no preference%s\n", chat_dim(s), a.n_tied, chat_reset(s));
    /* the best ranked answer continues the conversation */
    for (int i = 0; i < s->n_cands; i++)
        if (ranks[i] == 1) {
            s->reply_index = i;
            break;
        }
    after_judgement(s, &a);
    return 0;
}

int chat_cmd_rank(chat_session *s, const chat_input *in) {
    if (!in->rest[0]) return chat_fail(s, RLHF_ERR_INVALID, "usage: /rank B > A = C > D");
    return chat_rank_text(s, in->rest);
}

int chat_cmd_pair(chat_session *s, const chat_input *in) {
    store_verdict v = strcmp(in->name, "prefer") == 0 ? STORE_VERDICT_BETTER
                      : strcmp(in->name, "tie") == 0  ? STORE_VERDICT_TIE
                                                      : STORE_VERDICT_BOTH_BAD;
    if (in->n_words != 2) return chat_fail(s, RLHF_ERR_INVALID, "usage: /%s A B", in->name);
    int a, b, rc;
    if ((rc = labels_index(s, in->words[0], &a)) || (rc = labels_index(s, in->words[1], &b))) return rc;
    if (a == b) return chat_fail(s, RLHF_ERR_INVALID, "/%s: two different candidates, please", in->name);
    if ((rc = store_cands(s))) return rc;
    store_judge j = judge_of(s);
    store_added ad;
    rlhf_error err = {0};
    if (store_add_pair(s->db, &j, s->cands[a].generation_id, s->cands[b].generation_id, v, 1.0, &ad, &err))
        return chat_fail_err(s, &err);
    static const char *const what[] = {"better than", "tied with", "both bad with"};
    out_printf("saved pair #%lld (%c %s %c)\n", (long long)ad.id, 'A' + a, what[v], 'A' + b);
    if (v == STORE_VERDICT_BETTER) s->reply_index = a;
    after_judgement(s, &ad);
    return 0;
}

static int rating(chat_session *s, const chat_input *in, int first_label, int score, const char *cmd) {
    int i, rc;
    if ((rc = labels_index(s, in->words[0], &i))) return rc;
    char labels[512] = "";
    size_t n = 0;
    for (int w = first_label; w < in->n_words; w++) {
        int wrote = snprintf(labels + n, sizeof labels - n, "%s%s", n ? "," : "", in->words[w]);
        if (wrote < 0 || (size_t)wrote >= sizeof labels - n) return chat_fail(s, RLHF_ERR_INVALID, "/%s: too many labels", cmd);
        n += (size_t)wrote;
    }
    if ((rc = store_cands(s))) return rc;
    store_judge j = judge_of(s);
    store_added a;
    rlhf_error err = {0};
    if (store_add_rating(s->db, &j, s->cands[i].generation_id, score, n ? labels : NULL, &a, &err))
        return chat_fail(s, err.code, "/%s: %s", cmd, err.msg);
    if (score) out_printf("saved rating #%lld (%c: %d%s%s)\n", (long long)a.id, 'A' + i, score, n ? ", " : "", labels);
    else out_printf("saved flag #%lld (%c: %s)\n", (long long)a.id, 'A' + i, labels);
    after_judgement(s, &a);
    return 0;
}

int chat_cmd_rate(chat_session *s, const chat_input *in) {
    if (in->n_words < 2) return chat_fail(s, RLHF_ERR_INVALID, "usage: /rate A SCORE [LABEL ...] (SCORE 1-5)");
    char *end;
    long score = strtol(in->words[1], &end, 10);
    if (*end || score < 1 || score > 5) return chat_fail(s, RLHF_ERR_INVALID, "/rate: the score is 1..5, got '%s'", in->words[1]);
    return rating(s, in, 2, (int)score, "rate");
}

int chat_cmd_flag(chat_session *s, const chat_input *in) {
    if (in->n_words < 2) return chat_fail(s, RLHF_ERR_INVALID, "usage: /flag A unsafe|incorrect|off-topic|...");
    return rating(s, in, 1, 0, "flag");
}

int chat_cmd_comment(chat_session *s, const chat_input *in) {
    free(s->comment);
    s->comment = in->rest[0] ? strdup(in->rest) : NULL;
    out_printf(s->comment ? "comment noted: it is saved with your next judgement\n" : "comment cleared\n");
    return 0;
}

int chat_cmd_skip(chat_session *s, const chat_input *in) {
    int rc = store_cands(s);
    if (rc) return rc;
    store_judge j = judge_of(s);
    store_added a;
    rlhf_error err = {0};
    if (store_add_skip(s->db, &j, s->prompt_id, in->rest[0] ? in->rest : NULL, &a, &err)) return chat_fail_err(s, &err);
    out_printf("saved skip #%lld (prompt #%lld)\n", (long long)a.id, (long long)s->prompt_id);
    after_judgement(s, &a);
    return 0;
}

int chat_cmd_undo(chat_session *s, const chat_input *in) {
    (void)in;
    int rc = chat_store_open(s);
    if (rc) return rc;
    store_undone u;
    rlhf_error err = {0};
    if (store_undo_last(s->db, s->annotator, &u, &err)) {
        if (err.code == RLHF_ERR_NOT_FOUND) return chat_fail(s, err.code, "nothing of %s's to undo", s->annotator);
        return chat_fail_err(s, &err);
    }
    out_printf("undone: %s #%lld (%s at %s)\n", u.kind, (long long)u.target_id, strcmp(u.action, "add") == 0 ? "added" : "changed", u.at);
    s->judged = 0;
    return 0;
}

int chat_cmd_annotator(chat_session *s, const chat_input *in) {
    if (in->n_words == 0) {
        out_printf("annotator: %s\n", s->annotator);
        return 0;
    }
    if (in->n_words != 1) return chat_fail(s, RLHF_ERR_INVALID, "usage: /annotator NAME (one word)");
    char *n = strdup(in->words[0]);
    if (!n) return chat_fail(s, RLHF_ERR_NOMEM, "out of memory");
    free(s->annotator);
    s->annotator = n;
    out_printf("annotator: %s\n", n);
    return 0;
}

int chat_cmd_guideline(chat_session *s, const chat_input *in) {
    if (in->n_words == 0) {
        out_printf(s->guideline_version ? "guideline: %s\n" : "no guideline (/guideline FILE sets one)%s\n",
                   s->guideline_version ? s->guideline_version : "");
        return 0;
    }
    if (in->n_words != 1) return chat_fail(s, RLHF_ERR_INVALID, "usage: /guideline FILE | off");
    if (strcmp(in->words[0], "off") == 0) {
        free(s->guideline_version), free(s->guideline_text);
        s->guideline_version = s->guideline_text = NULL;
        out_printf("guideline cleared\n");
        return 0;
    }
    char *text = NULL;
    size_t len = 0;
    rlhf_error err = {0};
    if (file_read_all(in->words[0], &text, &len, &err)) return chat_fail_err(s, &err);
    const char *slash = strrchr(in->words[0], '/');
    char *version = strdup(slash ? slash + 1 : in->words[0]);
    if (!version) {
        free(text);
        return chat_fail(s, RLHF_ERR_NOMEM, "out of memory");
    }
    free(s->guideline_version), free(s->guideline_text);
    s->guideline_version = version;
    s->guideline_text = text;
    out_printf("guideline %s (%zu bytes) is saved with each judgement\n", version, len);
    return 0;
}

/* ---- blind mode ---- */

int chat_cmd_blind(chat_session *s, const chat_input *in) {
    const char *w = in->n_words == 1 ? in->words[0] : "";
    if (in->n_words == 0) {
        out_printf("blind mode %s\n", s->blind < 0 ? "auto (on when candidates differ in strategy or model)" : s->blind ? "on" : "off");
        return 0;
    }
    if (strcmp(w, "on") == 0) s->blind = 1;
    else if (strcmp(w, "off") == 0) s->blind = 0;
    else if (strcmp(w, "auto") == 0) s->blind = -1;
    else return chat_fail(s, RLHF_ERR_INVALID, "usage: /blind on|off|auto");
    out_printf("blind mode %s (from the next candidates on)\n", w);
    return 0;
}

static int origins_differ(const chat_session *s) {
    for (int i = 1; i < s->n_cands; i++) {
        const chat_cand *a = &s->cands[0], *b = &s->cands[i];
        if (strcmp(a->strategy ? a->strategy : "", b->strategy ? b->strategy : "") != 0) return 1;
        if (strcmp(a->model ? a->model : "", b->model ? b->model : "") != 0) return 1;
    }
    return 0;
}

void chat_blind_apply(chat_session *s) {
    s->hidden = s->n_cands > 1 && (s->blind > 0 || (s->blind < 0 && origins_differ(s)));
    s->reply_index = 0;
    if (!s->hidden) return;
    /* Fisher-Yates: the order shown says nothing about where an answer came from */
    for (int i = s->n_cands - 1; i > 0; i--) {
        int j = (int)rng_below(&s->shuffle, (uint64_t)i + 1);
        chat_cand t = s->cands[i];
        s->cands[i] = s->cands[j];
        s->cands[j] = t;
    }
    out_printf("%sblind: origins hidden and order shuffled until you judge (/blind off to see them)%s\n", chat_dim(s),
               chat_reset(s));
}

/* ---- the queue ---- */

typedef struct {
    chat_session *s;
    int rc;
} queue_load;

static char *dup_or_null(const char *t) { return t ? strdup(t) : NULL; }

static int load_generation(void *ctx, const store_prompt_generation *g) {
    queue_load *q = ctx;
    chat_session *s = q->s;
    if (s->n_cands == CHAT_MAX_CANDS) return 0; /* more than fit are not shown */
    if (!s->prompt_text) s->prompt_text = dup_or_null(g->prompt_text);
    chat_cand *c = &s->cands[s->n_cands++];
    memset(c, 0, sizeof *c);
    c->text = strdup(g->text);
    c->ids = NULL;
    c->n_ids = g->n_tokens > 0 ? (int)g->n_tokens : 0;
    c->logprob = g->logprob;
    c->ms = -1; /* not generated here: no timing, no finish reason */
    c->generation_id = g->generation_id;
    c->model = dup_or_null(g->model);
    c->strategy = dup_or_null(g->strategy);
    char o[300];
    snprintf(o, sizeof o, "%s", g->strategy ? g->strategy : g->model ? "model" : "imported");
    c->origin = strdup(o);
    if (!c->text || !c->origin) q->rc = RLHF_ERR_NOMEM;
    return 0;
}

int chat_cmd_next(chat_session *s, const chat_input *in) {
    (void)in;
    int rc = chat_store_open(s);
    if (rc) return rc;
    int64_t pid = 0;
    rlhf_error err = {0};
    if (store_queue_next(s->db, s->annotator, &pid, &err)) return chat_fail_err(s, &err);
    if (!pid) {
        out_printf("the queue is empty: every stored prompt with candidates has a judgement from %s\n", s->annotator);
        return 0;
    }
    chat_cands_clear(s);
    queue_load q = {s, 0};
    if (store_prompt_generations_each(s->db, pid, load_generation, &q, &err)) {
        chat_cands_clear(s);
        return chat_fail_err(s, &err);
    }
    if (q.rc) {
        chat_cands_clear(s);
        return chat_fail(s, q.rc, "out of memory");
    }
    s->prompt_id = pid;
    s->from_queue = 1;
    int64_t done = 0, left = 0;
    store_queue_progress(s->db, s->annotator, &done, &left, NULL);
    out_printf("%sprompt #%lld%s (%lld left in your queue)\n%s\n", chat_bold(s), (long long)pid, chat_reset(s),
               (long long)left, s->prompt_text ? s->prompt_text : "");
    chat_blind_apply(s);
    chat_show_cands(s);
    return 0;
}

int chat_cmd_progress(chat_session *s, const chat_input *in) {
    (void)in;
    int rc = chat_store_open(s);
    if (rc) return rc;
    int64_t done = 0, left = 0;
    rlhf_error err = {0};
    if (store_queue_progress(s->db, s->annotator, &done, &left, &err)) return chat_fail_err(s, &err);
    out_printf("%s: %lld of %lld prompts with candidates judged, %lld left\n", s->annotator, (long long)done,
               (long long)(done + left), (long long)left);
    return 0;
}

/* ---- statistics ---- */

int chat_cmd_stats(chat_session *s, const chat_input *in) {
    (void)in;
    int rc = chat_store_open(s);
    if (rc) return rc;
    store_counts c;
    rlhf_error err = {0};
    if (store_get_counts(s->db, &c, &err)) return chat_fail_err(s, &err);
    out_printf("%s: %lld prompts, %lld generations, %lld models, %lld annotators\n", s->db_path, (long long)c.prompts,
               (long long)c.generations, (long long)c.models, (long long)c.annotators);
    out_printf("judgements: %lld rankings, %lld pairs (%lld direct, %lld from rankings; %lld better, %lld tie, "
               "%lld both bad), %lld ratings, %lld skips\n",
               (long long)c.rankings, (long long)c.pairs, (long long)c.pairs_direct, (long long)c.pairs_derived,
               (long long)c.pairs_better, (long long)c.pairs_tie, (long long)c.pairs_both_bad, (long long)c.ratings,
               (long long)c.skips);
    store_agreement a;
    if (store_get_agreement(s->db, &a, &err) == 0) {
        if (a.n_items) out_printf("agreement: Krippendorff's alpha %.3f over %zu items judged by %zu annotators\n", a.alpha, a.n_items, a.n_annotators);
        else out_printf("agreement: no item judged by two annotators yet\n");
        store_agreement_free(&a);
    }
    return 0;
}

int chat_cmd_leaderboard(chat_session *s, const chat_input *in) {
    store_leaderboard_params p = {0};
    p.by = STORE_BY_MODEL;
    p.prior = -1;
    const char *w = in->n_words ? in->words[0] : "models";
    if (strcmp(w, "strategies") == 0 || strcmp(w, "strategy") == 0) p.by = STORE_BY_STRATEGY;
    else if (strcmp(w, "models") != 0 && strcmp(w, "model") != 0) return chat_fail(s, RLHF_ERR_INVALID, "usage: /leaderboard [models|strategies]");
    int rc = chat_store_open(s);
    if (rc) return rc;
    store_leaderboard l;
    rlhf_error err = {0};
    if (store_get_leaderboard(s->db, &p, &l, &err)) return chat_fail_err(s, &err);
    if (!l.n) out_printf("no judgements between different %s yet\n", p.by == STORE_BY_MODEL ? "models" : "strategies");
    else out_printf("%-4s %-40s %7s %17s %7s %8s\n", "#", p.by == STORE_BY_MODEL ? "model" : "strategy", "elo", "95% interval", "games", "win rate");
    for (size_t i = 0; i < l.n; i++) {
        const store_leaderboard_row *r = &l.rows[i];
        out_printf("%-4zu %-40s %7.0f %8.0f..%-7.0f %7.1f %7.0f%%\n", i + 1, r->name, r->elo, r->elo_lo, r->elo_hi,
                   r->games, 100 * r->win_rate);
    }
    if (l.n) out_printf("%s%zu judgements used, %zu ignored (same player or none)%s\n", chat_dim(s), l.n_games, l.n_ignored, chat_reset(s));
    store_leaderboard_free(&l);
    return 0;
}

/* ---- import / export ---- */

/* "[--format F] FILE": the format given, or guessed from the first record's fields. */
static int format_and_file(chat_session *s, const chat_input *in, const char *cmd, int guess, store_format *f,
                           const char **file) {
    rlhf_error err = {0};
    const char *fmt = NULL;
    *file = NULL;
    for (int i = 0; i < in->n_words; i++) {
        if (strcmp(in->words[i], "--format") == 0 && i + 1 < in->n_words) fmt = in->words[++i];
        else if (!*file) *file = in->words[i];
        else return chat_fail(s, RLHF_ERR_INVALID, "usage: /%s [--format trl|hh|sft] FILE.jsonl", cmd);
    }
    if (!*file) return chat_fail(s, RLHF_ERR_INVALID, "usage: /%s [--format trl|hh|sft] FILE.jsonl", cmd);
    if (fmt) {
        if (store_format_parse(fmt, f, &err)) return chat_fail_err(s, &err);
        return 0;
    }
    *f = STORE_FORMAT_TRL;
    if (!guess) return 0;
    FILE *fp = fopen(*file, "r");
    if (!fp) return chat_fail(s, RLHF_ERR_IO, "%s: cannot open", *file);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, fp)) >= 0 && strspn(line, " \t\r\n") == (size_t)n) {}
    cJSON *o = n >= 0 ? cJSON_Parse(line) : NULL;
    free(line);
    fclose(fp);
    if (cJSON_GetObjectItemCaseSensitive(o, "completion") || cJSON_GetObjectItemCaseSensitive(o, "messages")) *f = STORE_FORMAT_SFT;
    else if (!cJSON_GetObjectItemCaseSensitive(o, "prompt") && cJSON_GetObjectItemCaseSensitive(o, "chosen")) *f = STORE_FORMAT_HH;
    cJSON_Delete(o);
    return 0;
}

int chat_cmd_import(chat_session *s, const chat_input *in) {
    store_format f;
    const char *file;
    int rc = format_and_file(s, in, "import", 1, &f, &file);
    if (rc || (rc = chat_store_open(s))) return rc;
    store_import_params p = {f, 0, NULL, 0}; /* the file's judgements are not this annotator's: "import" */
    store_import_report rep;
    rlhf_error err = {0};
    rc = store_import_jsonl(s->db, file, &p, &rep, &err);
    for (size_t i = 0; i < rep.n_issues && i < 5; i++)
        out_error("%s:%zu: %s%s", file, rep.issues[i].line, rep.issues[i].is_error ? "" : "(imported, flagged) ", rep.issues[i].reason);
    if (!rc) out_printf("imported %zu records (%s) from %s: %zu bad lines, %zu flagged\n", rep.n_records, store_format_name(f),
                        file, rep.n_bad, rep.n_flagged);
    store_import_report_free(&rep);
    if (rc) return chat_fail_err(s, &err);
    return 0;
}

int chat_cmd_export(chat_session *s, const chat_input *in) {
    store_format f;
    const char *file;
    int rc = format_and_file(s, in, "export", 0, &f, &file);
    if (rc || (rc = chat_store_open(s))) return rc;
    file_atomic fa = {0};
    rlhf_error err = {0};
    if (file_atomic_open(&fa, file, &err)) return chat_fail_err(s, &err);
    store_export_params p = {f, 0, 0};
    store_export_report rep = {0};
    rc = store_export_jsonl(s->db, fa.fp, &p, &rep, &err);
    if (!rc) rc = file_atomic_commit(&fa, &err);
    else file_atomic_abort(&fa);
    if (rc) return chat_fail_err(s, &err);
    out_printf("exported %zu records (%s) to %s; %zu pairs the format cannot hold were left out\n", rep.n_written,
               store_format_name(f), file, rep.n_skipped);
    return 0;
}

/* ---- models, runs, training ---- */

static int print_model(void *ctx, const store_model_info *m) {
    (void)ctx;
    out_printf("%-24s %-8s %-9s %-20s %s\n", m->name, m->family ? m->family : "-", m->made_by ? m->made_by : "-",
               m->parent ? m->parent : "-", m->path ? m->path : "-");
    return 0;
}

int chat_cmd_models(chat_session *s, const chat_input *in) {
    (void)in;
    int rc = chat_store_open(s);
    if (rc) return rc;
    out_printf("%-24s %-8s %-9s %-20s %s\n", "name", "family", "made by", "parent", "path");
    rlhf_error err = {0};
    if (store_models_each(s->db, print_model, NULL, &err)) return chat_fail_err(s, &err);
    out_printf("%s/model use NAME loads one%s\n", chat_dim(s), chat_reset(s));
    return 0;
}

static int print_run(void *ctx, const store_run_info *r) {
    int *n = ctx;
    (*n)++;
    out_printf("#%-4lld %-8s %-8s %-20s -> %-20s %5lld metrics  %s\n", (long long)r->id, r->kind, r->status,
               r->input_model ? r->input_model : "-", r->output_model ? r->output_model : "-", (long long)r->n_metrics,
               r->started_at ? r->started_at : "");
    return 0;
}

int chat_cmd_runs(chat_session *s, const chat_input *in) {
    (void)in;
    int rc = chat_store_open(s);
    if (rc) return rc;
    int n = 0;
    rlhf_error err = {0};
    if (store_runs_each(s->db, print_run, &n, &err)) return chat_fail_err(s, &err);
    if (!n) out_printf("no training runs recorded yet\n");
    return 0;
}

/* /run show and /train: repl/chat_train.c */
