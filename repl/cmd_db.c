/* cmd_db.c — `rlhf db ...`: the feedback database from the command line.
 *
 * One table of subcommands {name, usage, help, handler}; each parses its own flags with
 * getopt_long, opens the store (default rlhf.db in the working directory, overridden by
 * RLHF_DB and then by --db), calls feedback/ and prints through repl/out.h. Exit status: 0 done,
 * 1 the work failed (the message says why), 2 bad usage. Scripts get --json where they read. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "feedback/store.h"
#include "repl/commands.h"
#include "repl/out.h"
#include "src/core/fileio.h"

typedef struct db_sub db_sub;
struct db_sub {
    const char *name;
    const char *usage;
    const char *help;    /* one sentence */
    const char *details; /* the flags, one per line */
    int (*handler)(const db_sub *sub, int argc, char **argv);
};

static const db_sub *find_sub(const char *name);

static int usage_error(const db_sub *sub) {
    out_error("usage: %s", sub->usage);
    out_error("run 'rlhf db %s --help' for details", sub->name);
    return 2;
}

static int print_help(const db_sub *sub) {
    out_printf("usage: %s\n  %s\n%s", sub->usage, sub->help, sub->details);
    return 0;
}

static int bad_option(const db_sub *sub, int c, char **argv) {
    const char *opt = optind > 0 ? argv[optind - 1] : "?";
    if (c == ':') out_error("option '%s' needs a value", opt);
    else out_error("unknown option '%s'", opt);
    return usage_error(sub);
}

/* --db beats RLHF_DB beats rlhf.db in the working directory. */
static const char *cmd_db_path(const char *flag) {
    if (flag && *flag) return flag;
    const char *env = getenv("RLHF_DB");
    return env && *env ? env : "rlhf.db";
}

/* Opens the store; every subcommand but init and import wants an existing file. */
static int open_store(const char *path, int must_exist, store **s, rlhf_error *err) {
    store_open_params p = {must_exist, 0};
    int rc = store_open_ex(s, path, &p, err);
    if (rc == RLHF_ERR_NOT_FOUND && must_exist)
        rlhf_errorf(err, rc, "no database at %s (create one with 'rlhf db init --db %s', or set --db / RLHF_DB)", path, path);
    return rc;
}

/* Says what opening did when it migrated (shown by every subcommand, as it changes the file). */
static void report_migration(const store *s, const char *path) {
    store_open_info info;
    store_get_open_info(s, &info);
    if (!info.created && info.version_before != info.version_after)
        out_error("%s: migrated from schema version %d to %d (backup: %s)", path, info.version_before,
                  info.version_after, info.backup_path ? info.backup_path : "none");
}

static void print_json(cJSON *root) {
    char *text = root ? cJSON_Print(root) : NULL;
    if (text) out_printf("%s\n", text);
    else out_error("out of memory formatting JSON");
    free(text);
    cJSON_Delete(root);
}

/* Common flags: --db FILE and --json; `extra` adds the subcommand's own. */
enum { OPT_DB = 1000, OPT_JSON, OPT_FORMAT, OPT_STRICT, OPT_ANNOTATOR, OPT_REDACT, OPT_OUT,
       OPT_BY, OPT_SAMPLES, OPT_SEED, OPT_SKIP_FLAGGED, OPT_MAX_LINE };

static const struct option k_options[] = {
    {"db", required_argument, NULL, OPT_DB},
    {"json", no_argument, NULL, OPT_JSON},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"strict", no_argument, NULL, OPT_STRICT},
    {"annotator", required_argument, NULL, OPT_ANNOTATOR},
    {"redact", no_argument, NULL, OPT_REDACT},
    {"out", required_argument, NULL, OPT_OUT},
    {"by", required_argument, NULL, OPT_BY},
    {"samples", required_argument, NULL, OPT_SAMPLES},
    {"seed", required_argument, NULL, OPT_SEED},
    {"skip-flagged", no_argument, NULL, OPT_SKIP_FLAGGED},
    {"max-line-bytes", required_argument, NULL, OPT_MAX_LINE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

typedef struct {
    const char *db;
    int json;
    const char *format;
    int strict;
    const char *annotator;
    int redact;
    const char *out;
    const char *by;
    const char *samples;
    const char *seed;
    int skip_flagged;
    const char *max_line;
    int n_args;
    char **args;
} db_flags;

/* Parses argv (argv[0] = subcommand) accepting only the flags named in `allowed` (a list of
 * OPT_* values ending with 0). Returns 0, or the exit status to return (2). */
static int parse_flags(const db_sub *sub, int argc, char **argv, const int *allowed, db_flags *f) {
    memset(f, 0, sizeof *f);
    optind = 0; /* glibc: full re-initialisation, since main or a test may have used getopt */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", k_options, NULL)) != -1) {
        if (c == '?' || c == ':') return bad_option(sub, c, argv);
        int ok = c == 'h';
        for (const int *a = allowed; *a; a++) ok |= *a == c;
        if (!ok) {
            out_error("'rlhf db %s' does not take option '%s'", sub->name, argv[optind - 1]);
            return usage_error(sub);
        }
        switch (c) {
        case OPT_DB: f->db = optarg; break;
        case OPT_JSON: f->json = 1; break;
        case OPT_FORMAT: f->format = optarg; break;
        case OPT_STRICT: f->strict = 1; break;
        case OPT_ANNOTATOR: f->annotator = optarg; break;
        case OPT_REDACT: f->redact = 1; break;
        case OPT_OUT: f->out = optarg; break;
        case OPT_BY: f->by = optarg; break;
        case OPT_SAMPLES: f->samples = optarg; break;
        case OPT_SEED: f->seed = optarg; break;
        case OPT_SKIP_FLAGGED: f->skip_flagged = 1; break;
        case OPT_MAX_LINE: f->max_line = optarg; break;
        default: break;
        }
    }
    f->n_args = argc - optind;
    f->args = argv + optind;
    return 0;
}

static int no_args(const db_sub *sub, const db_flags *f) {
    if (f->n_args == 0) return 0;
    out_error("unexpected argument '%s'", f->args[0]);
    return usage_error(sub);
}

/* A non-negative integer flag; -1 if malformed. */
static long long parse_count(const char *s) {
    if (!s || !*s) return -1;
    char *end;
    long long v = strtoll(s, &end, 10);
    return *end || v < 0 ? -1 : v;
}

/* ---- init / migrate ---- */

static int cmd_db_init(const db_sub *sub, int argc, char **argv) {
    static const int allowed[] = {OPT_DB, OPT_JSON, 0};
    db_flags f;
    int rc = parse_flags(sub, argc, argv, allowed, &f);
    if (rc || (rc = no_args(sub, &f))) return rc;
    const char *path = cmd_db_path(f.db);
    rlhf_error err = {0};
    store *s = NULL;
    if (open_store(path, 0, &s, &err)) return out_fail(&err);
    store_open_info info;
    store_get_open_info(s, &info);
    if (f.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "database", path);
        cJSON_AddBoolToObject(o, "created", info.created);
        cJSON_AddNumberToObject(o, "schema_version", info.version_after);
        print_json(o);
    } else if (info.created) {
        out_printf("created %s (schema version %d)\n", path, info.version_after);
    } else {
        report_migration(s, path);
        out_printf("%s is already initialised (schema version %d)\n", path, info.version_after);
    }
    store_close(&s);
    return 0;
}

static int cmd_db_migrate(const db_sub *sub, int argc, char **argv) {
    static const int allowed[] = {OPT_DB, OPT_JSON, 0};
    db_flags f;
    int rc = parse_flags(sub, argc, argv, allowed, &f);
    if (rc || (rc = no_args(sub, &f))) return rc;
    const char *path = cmd_db_path(f.db);
    rlhf_error err = {0};
    store *s = NULL;
    if (open_store(path, 1, &s, &err)) return out_fail(&err);
    store_open_info info;
    store_get_open_info(s, &info);
    if (f.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "database", path);
        cJSON_AddNumberToObject(o, "version_before", info.version_before);
        cJSON_AddNumberToObject(o, "version_after", info.version_after);
        if (info.backup_path) cJSON_AddStringToObject(o, "backup", info.backup_path);
        else cJSON_AddNullToObject(o, "backup");
        print_json(o);
    } else if (info.version_before != info.version_after) {
        out_printf("%s: migrated from schema version %d to %d (backup: %s)\n", path, info.version_before,
                   info.version_after, info.backup_path ? info.backup_path : "none");
    } else {
        out_printf("%s is at schema version %d; nothing to migrate\n", path, info.version_after);
    }
    store_close(&s);
    return 0;
}

/* ---- stats / check ---- */

static int cmd_db_stats(const db_sub *sub, int argc, char **argv) {
    static const int allowed[] = {OPT_DB, OPT_JSON, 0};
    db_flags f;
    int rc = parse_flags(sub, argc, argv, allowed, &f);
    if (rc || (rc = no_args(sub, &f))) return rc;
    const char *path = cmd_db_path(f.db);
    rlhf_error err = {0};
    store *s = NULL;
    store_counts c;
    if (open_store(path, 1, &s, &err)) return out_fail(&err);
    report_migration(s, path);
    rc = store_get_counts(s, &c, &err);
    store_close(&s);
    if (rc) return out_fail(&err);
    if (f.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "database", path);
        cJSON_AddNumberToObject(o, "schema_version", c.schema_version);
        const struct { const char *name; int64_t v; } fields[] = {
            {"models", c.models}, {"runs", c.runs}, {"metrics", c.metrics}, {"prompts", c.prompts},
            {"generations", c.generations}, {"annotators", c.annotators}, {"guidelines", c.guidelines},
            {"rankings", c.rankings}, {"ranking_items", c.ranking_items}, {"pairs", c.pairs},
            {"pairs_direct", c.pairs_direct}, {"pairs_derived", c.pairs_derived},
            {"pairs_better", c.pairs_better}, {"pairs_tie", c.pairs_tie}, {"pairs_both_bad", c.pairs_both_bad},
            {"pairs_flagged", c.pairs_flagged}, {"tied_pairs_excluded", c.tied_pairs_excluded},
            {"ratings", c.ratings}, {"skips", c.skips}, {"audit", c.audit}, {"imports", c.imports},
        };
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
            cJSON_AddNumberToObject(o, fields[i].name, (double)fields[i].v);
        print_json(o);
        return 0;
    }
    out_printf("database     %s (schema version %d)\n", path, c.schema_version);
    out_printf("models       %lld\n", (long long)c.models);
    out_printf("runs         %lld (%lld metric values)\n", (long long)c.runs, (long long)c.metrics);
    out_printf("prompts      %lld\n", (long long)c.prompts);
    out_printf("generations  %lld\n", (long long)c.generations);
    out_printf("annotators   %lld (%lld guideline versions)\n", (long long)c.annotators, (long long)c.guidelines);
    out_printf("rankings     %lld (%lld items; %lld tied pairs not turned into preferences)\n",
               (long long)c.rankings, (long long)c.ranking_items, (long long)c.tied_pairs_excluded);
    out_printf("pairs        %lld (better %lld, tie %lld, both bad %lld; direct %lld, from rankings %lld; flagged %lld)\n",
               (long long)c.pairs, (long long)c.pairs_better, (long long)c.pairs_tie, (long long)c.pairs_both_bad,
               (long long)c.pairs_direct, (long long)c.pairs_derived, (long long)c.pairs_flagged);
    out_printf("ratings      %lld\n", (long long)c.ratings);
    out_printf("skips        %lld\n", (long long)c.skips);
    out_printf("audit log    %lld entries\n", (long long)c.audit);
    out_printf("imports      %lld\n", (long long)c.imports);
    return 0;
}

static int cmd_db_check(const db_sub *sub, int argc, char **argv) {
    static const int allowed[] = {OPT_DB, OPT_JSON, 0};
    db_flags f;
    int rc = parse_flags(sub, argc, argv, allowed, &f);
    if (rc || (rc = no_args(sub, &f))) return rc;
    const char *path = cmd_db_path(f.db);
    rlhf_error err = {0};
    store *s = NULL;
    store_check_report r;
    if (open_store(path, 1, &s, &err)) return out_fail(&err);
    report_migration(s, path);
    rc = store_check(s, &r, &err);
    store_close(&s);
    if (rc) return out_fail(&err);
    if (f.json) {
        cJSON *o = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(o, "problems");
        cJSON_AddStringToObject(o, "database", path);
        cJSON_AddBoolToObject(o, "ok", r.n == 0);
        for (size_t i = 0; i < r.n; i++) cJSON_AddItemToArray(arr, cJSON_CreateString(r.problems[i]));
        print_json(o);
    } else if (r.n == 0) {
        out_printf("%s: ok (integrity, foreign keys, pairs and rankings consistent)\n", path);
    } else {
        for (size_t i = 0; i < r.n; i++) out_error("%s: %s", path, r.problems[i]);
        out_error("%s: %zu problem%s found", path, r.n, r.n == 1 ? "" : "s");
    }
    int status = r.n ? 1 : 0;
    store_check_report_free(&r);
    return status;
}

/* ---- import / export ---- */

static int cmd_db_import(const db_sub *sub, int argc, char **argv) {
    static const int allowed[] = {OPT_DB, OPT_JSON, OPT_FORMAT, OPT_STRICT, OPT_ANNOTATOR, OPT_MAX_LINE, 0};
    db_flags f;
    int rc = parse_flags(sub, argc, argv, allowed, &f);
    if (rc) return rc;
    rlhf_error err = {0};
    store_import_params p = {0};
    if (!f.format) {
        out_error("--format is required (trl, hh or sft)");
        return usage_error(sub);
    }
    if (store_format_parse(f.format, &p.format, &err)) {
        out_fail(&err);
        return usage_error(sub);
    }
    if (f.n_args != 1) {
        out_error(f.n_args ? "import takes one file" : "which file? give FILE.jsonl (or - for stdin)");
        return usage_error(sub);
    }
    long long max_line = f.max_line ? parse_count(f.max_line) : 0;
    if (max_line < 0) {
        out_error("--max-line-bytes wants a number of bytes");
        return usage_error(sub);
    }
    p.strict = f.strict;
    p.annotator = f.annotator;
    p.max_line_bytes = (size_t)max_line;
    const char *path = cmd_db_path(f.db), *file = f.args[0];
    if (strcmp(file, "-") != 0 && !file_exists(file)) {
        out_error("cannot read %s: no such file", file);
        return 1;
    }
    store *s = NULL;
    if (open_store(path, 0, &s, &err)) return out_fail(&err);
    report_migration(s, path);
    store_import_report rep;
    rc = store_import_jsonl(s, file, &p, &rep, &err);
    store_close(&s);
    for (size_t i = 0; i < rep.n_issues; i++) {
        if (rc && !rep.issues[i].is_error) continue; /* "stored flagged" is moot: nothing was stored */
        out_error("%s:%zu: %s%s", file, rep.issues[i].line, rep.issues[i].is_error ? "" : "warning: ",
                  rep.issues[i].reason);
    }
    if (rep.n_issues_total > rep.n_issues)
        out_error("%s: ... and %zu more issues not shown", file, rep.n_issues_total - rep.n_issues);
    if (f.json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", file);
        cJSON_AddStringToObject(o, "format", store_format_name(p.format));
        cJSON_AddBoolToObject(o, "ok", rc == 0);
        cJSON_AddNumberToObject(o, "lines", (double)rep.n_lines);
        cJSON_AddNumberToObject(o, "imported", (double)rep.n_records);
        cJSON_AddNumberToObject(o, "bad", (double)rep.n_bad);
        cJSON_AddNumberToObject(o, "flagged", (double)rep.n_flagged);
        cJSON_AddNumberToObject(o, "blank", (double)rep.n_blank);
        cJSON_AddNumberToObject(o, "seconds", rep.seconds);
        cJSON *issues = cJSON_AddArrayToObject(o, "issues");
        for (size_t i = 0; i < rep.n_issues; i++) {
            cJSON *it = cJSON_CreateObject();
            cJSON_AddNumberToObject(it, "line", (double)rep.issues[i].line);
            cJSON_AddStringToObject(it, "level", rep.issues[i].is_error ? "error" : "warning");
            cJSON_AddStringToObject(it, "reason", rep.issues[i].reason);
            cJSON_AddItemToArray(issues, it);
        }
        if (rc) cJSON_AddStringToObject(o, "error", err.msg);
        print_json(o);
    }
    if (rc) {
        if (!f.json) out_fail(&err);
        store_import_report_free(&rep);
        return 1;
    }
    if (!f.json)
        out_printf("imported %zu record%s from %s into %s (%zu bad line%s skipped, %zu flagged) in %.2f s\n",
                   rep.n_records, rep.n_records == 1 ? "" : "s", file, path, rep.n_bad, rep.n_bad == 1 ? "" : "s",
                   rep.n_flagged, rep.seconds);
    store_import_report_free(&rep);
    return 0;
}

static int cmd_db_export(const db_sub *sub, int argc, char **argv) {
    static const int allowed[] = {OPT_DB, OPT_FORMAT, OPT_REDACT, OPT_OUT, OPT_SKIP_FLAGGED, 0};
    db_flags f;
    int rc = parse_flags(sub, argc, argv, allowed, &f);
    if (rc || (rc = no_args(sub, &f))) return rc;
    rlhf_error err = {0};
    store_export_params p = {0};
    if (!f.format) {
        out_error("--format is required (trl, hh or sft)");
        return usage_error(sub);
    }
    if (store_format_parse(f.format, &p.format, &err)) {
        out_fail(&err);
        return usage_error(sub);
    }
    p.redact = f.redact;
    p.skip_flagged = f.skip_flagged;
    const char *path = cmd_db_path(f.db);
    store *s = NULL;
    if (open_store(path, 1, &s, &err)) return out_fail(&err);
    report_migration(s, path);
    store_export_report rep;
    file_atomic fa = {0};
    FILE *fp = out_stream();
    if (f.out) {
        /* temp file + fsync + rename: a failed export never leaves half a file under the name */
        if (file_atomic_open(&fa, f.out, &err)) {
            store_close(&s);
            return out_fail(&err);
        }
        fp = fa.fp;
    }
    rc = store_export_jsonl(s, fp, &p, &rep, &err);
    store_close(&s);
    if (!rc && f.out) rc = file_atomic_commit(&fa, &err);
    if (rc) {
        file_atomic_abort(&fa);
        return out_fail(&err);
    }
    if (rep.n_skipped)
        out_error("note: %zu judgement%s left out (%s)", rep.n_skipped, rep.n_skipped == 1 ? "" : "s",
                  p.format == STORE_FORMAT_SFT ? "flagged" : "ties and both-bad verdicts have no chosen/rejected, or flagged");
    if (f.out)
        out_printf("exported %zu record%s to %s (%s format%s)\n", rep.n_written, rep.n_written == 1 ? "" : "s", f.out,
                   store_format_name(p.format), p.redact ? ", redacted" : "");
    return 0;
}

/* ---- leaderboard / agreement ---- */

static int cmd_db_leaderboard(const db_sub *sub, int argc, char **argv) {
    static const int allowed[] = {OPT_DB, OPT_JSON, OPT_BY, OPT_SAMPLES, OPT_SEED, 0};
    db_flags f;
    int rc = parse_flags(sub, argc, argv, allowed, &f);
    if (rc || (rc = no_args(sub, &f))) return rc;
    store_leaderboard_params p = {STORE_BY_MODEL, 1000, 42, -1};
    if (f.by && strcmp(f.by, "strategy") == 0) p.by = STORE_BY_STRATEGY;
    else if (f.by && strcmp(f.by, "model") != 0) {
        out_error("--by wants model or strategy (got '%s')", f.by);
        return usage_error(sub);
    }
    long long samples = f.samples ? parse_count(f.samples) : 1000, seed = f.seed ? parse_count(f.seed) : 42;
    if (samples < 1 || samples > 100000 || seed < 0) {
        out_error("--samples wants 1..100000 and --seed a non-negative integer");
        return usage_error(sub);
    }
    p.n_bootstrap = (int)samples;
    p.seed = (uint64_t)seed;
    const char *path = cmd_db_path(f.db);
    rlhf_error err = {0};
    store *s = NULL;
    store_leaderboard lb;
    if (open_store(path, 1, &s, &err)) return out_fail(&err);
    report_migration(s, path);
    rc = store_get_leaderboard(s, &p, &lb, &err);
    store_close(&s);
    if (rc) return out_fail(&err);
    const char *what = p.by == STORE_BY_MODEL ? "model" : "strategy";
    if (f.json) {
        cJSON *o = cJSON_CreateObject(), *rows = cJSON_CreateArray();
        cJSON_AddStringToObject(o, "by", what);
        cJSON_AddNumberToObject(o, "judgements", (double)lb.n_games);
        cJSON_AddNumberToObject(o, "ignored", (double)lb.n_ignored);
        cJSON_AddNumberToObject(o, "bootstrap_samples", p.n_bootstrap);
        cJSON_AddNumberToObject(o, "seed", (double)p.seed);
        for (size_t i = 0; i < lb.n; i++) {
            const store_leaderboard_row *r = &lb.rows[i];
            cJSON *row = cJSON_CreateObject();
            cJSON_AddNumberToObject(row, "rank", (double)(i + 1));
            cJSON_AddStringToObject(row, "name", r->name);
            cJSON_AddNumberToObject(row, "elo", r->elo);
            cJSON_AddNumberToObject(row, "elo_lo", r->elo_lo);
            cJSON_AddNumberToObject(row, "elo_hi", r->elo_hi);
            cJSON_AddNumberToObject(row, "strength", r->theta);
            cJSON_AddNumberToObject(row, "games", r->games);
            cJSON_AddNumberToObject(row, "wins", r->wins);
            cJSON_AddNumberToObject(row, "win_rate", r->win_rate);
            cJSON_AddItemToArray(rows, row);
        }
        cJSON_AddItemToObject(o, "rows", rows);
        print_json(o);
    } else if (lb.n_games == 0) {
        out_printf("no judgements between different %ss yet (%zu ignored)\n", what, lb.n_ignored);
    } else {
        out_printf("%-4s  %-24s  %6s  %-15s  %7s  %8s\n", "rank", what, "elo", "95% CI", "games", "win rate");
        for (size_t i = 0; i < lb.n; i++) {
            const store_leaderboard_row *r = &lb.rows[i];
            if (r->games == 0) continue;
            char ci[32];
            snprintf(ci, sizeof ci, "%.0f..%.0f", r->elo_lo, r->elo_hi);
            out_printf("%4zu  %-24s  %6.0f  %-15s  %7.0f  %8.3f\n", i + 1, r->name, r->elo, ci, r->games, r->win_rate);
        }
        out_printf("Bradley-Terry over %zu judgements (ties and both-bad count half; %zu ignored: same %s on both sides or none recorded); %d bootstrap samples, seed %llu\n",
                   lb.n_games, lb.n_ignored, what, p.n_bootstrap, (unsigned long long)p.seed);
    }
    store_leaderboard_free(&lb);
    return 0;
}

static void add_number_or_null(cJSON *o, const char *name, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, name, v);
    else cJSON_AddNullToObject(o, name);
}

static int cmd_db_agreement(const db_sub *sub, int argc, char **argv) {
    static const int allowed[] = {OPT_DB, OPT_JSON, 0};
    db_flags f;
    int rc = parse_flags(sub, argc, argv, allowed, &f);
    if (rc || (rc = no_args(sub, &f))) return rc;
    const char *path = cmd_db_path(f.db);
    rlhf_error err = {0};
    store *s = NULL;
    store_agreement a;
    if (open_store(path, 1, &s, &err)) return out_fail(&err);
    report_migration(s, path);
    rc = store_get_agreement(s, &a, &err);
    store_close(&s);
    if (rc) return out_fail(&err);
    if (f.json) {
        cJSON *o = cJSON_CreateObject(), *pairs = cJSON_CreateArray();
        add_number_or_null(o, "alpha", a.alpha);
        cJSON_AddNumberToObject(o, "items", (double)a.n_items);
        cJSON_AddNumberToObject(o, "judgements", (double)a.n_judgements);
        cJSON_AddNumberToObject(o, "annotators", (double)a.n_annotators);
        for (size_t i = 0; i < a.n_pairs; i++) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddStringToObject(p, "a", a.pairs[i].annotator_a);
            cJSON_AddStringToObject(p, "b", a.pairs[i].annotator_b);
            cJSON_AddNumberToObject(p, "items", (double)a.pairs[i].n_items);
            add_number_or_null(p, "observed", a.pairs[i].observed);
            add_number_or_null(p, "kappa", a.pairs[i].kappa);
            cJSON_AddItemToArray(pairs, p);
        }
        cJSON_AddItemToObject(o, "pairs", pairs);
        print_json(o);
    } else if (a.n_items == 0) {
        out_printf("no pair of generations has been judged by two annotators yet\n");
    } else {
        out_printf("%-32s  %6s  %8s  %7s\n", "annotators", "items", "observed", "kappa");
        for (size_t i = 0; i < a.n_pairs; i++) {
            char who[96];
            snprintf(who, sizeof who, "%s / %s", a.pairs[i].annotator_a, a.pairs[i].annotator_b);
            char kappa[16];
            if (isfinite(a.pairs[i].kappa)) snprintf(kappa, sizeof kappa, "%7.3f", a.pairs[i].kappa);
            else snprintf(kappa, sizeof kappa, "%7s", "n/a");
            out_printf("%-32s  %6zu  %8.3f  %s\n", who, a.pairs[i].n_items, a.pairs[i].observed, kappa);
        }
        if (isfinite(a.alpha))
            out_printf("Krippendorff's alpha (nominal): %.3f over %zu items judged by %zu annotators (%zu judgements)\n",
                       a.alpha, a.n_items, a.n_annotators, a.n_judgements);
        else
            out_printf("Krippendorff's alpha: n/a (every judgement has the same label)\n");
    }
    store_agreement_free(&a);
    return 0;
}

/* ---- the table ---- */

static const db_sub k_subs[] = {
    {"init", "rlhf db init [--db FILE] [--json]", "create the feedback database (or report the existing one's version)",
     "  --db FILE   database file (default: $RLHF_DB, else rlhf.db)\n  --json      machine-readable output\n", cmd_db_init},
    {"migrate", "rlhf db migrate [--db FILE] [--json]", "bring an older database to this program's schema version (backup FILE.bak-vN first)",
     "  --db FILE   database file (default: $RLHF_DB, else rlhf.db)\n  --json      machine-readable output\n", cmd_db_migrate},
    {"stats", "rlhf db stats [--db FILE] [--json]", "count what the database holds",
     "  --db FILE   database file (default: $RLHF_DB, else rlhf.db)\n  --json      machine-readable output\n", cmd_db_stats},
    {"check", "rlhf db check [--db FILE] [--json]", "check integrity, foreign keys and the consistency of pairs and rankings (exit 1 on problems)",
     "  --db FILE   database file (default: $RLHF_DB, else rlhf.db)\n  --json      machine-readable output\n", cmd_db_check},
    {"import", "rlhf db import --format trl|hh|sft [--strict] [--annotator NAME] [--db FILE] [--json] FILE.jsonl|-",
     "import JSONL preference or SFT data (- reads stdin) in one transaction, reporting bad lines",
     "  --format F          trl: {\"prompt\",\"chosen\",\"rejected\"} (strings or message lists)\n"
     "                      hh:  {\"chosen\",\"rejected\"} whole \\n\\nHuman:/\\n\\nAssistant: dialogues\n"
     "                      sft: {\"prompt\",\"completion\"} or {\"messages\":[...]}\n"
     "  --strict            import nothing if any line is bad\n"
     "  --annotator NAME    attribute the judgements to NAME (default: import)\n"
     "  --max-line-bytes N  longest accepted line (default 4194304)\n"
     "  --db FILE           database file (default: $RLHF_DB, else rlhf.db; created if missing)\n"
     "  --json              machine-readable report\n", cmd_db_import},
    {"export", "rlhf db export --format trl|hh|sft [--redact] [--skip-flagged] [--out FILE] [--db FILE]",
     "write preference pairs (trl, hh) or SFT examples (sft) as JSONL",
     "  --format F       trl, hh or sft (see 'rlhf db import --help')\n"
     "  --redact         mask e-mail addresses, phone numbers, IPs and card numbers\n"
     "  --skip-flagged   leave out judgements flagged at write time\n"
     "  --out FILE       write FILE atomically instead of standard output\n"
     "  --db FILE        database file (default: $RLHF_DB, else rlhf.db)\n", cmd_db_export},
    {"leaderboard", "rlhf db leaderboard [--by model|strategy] [--samples N] [--seed S] [--json] [--db FILE]",
     "rank models or decoding strategies by Bradley-Terry with bootstrap 95% intervals",
     "  --by W       model (default) or strategy\n"
     "  --samples N  bootstrap resamples (default 1000)\n"
     "  --seed S     bootstrap seed (default 42; the output is deterministic)\n"
     "  --json       machine-readable output\n"
     "  --db FILE    database file (default: $RLHF_DB, else rlhf.db)\n", cmd_db_leaderboard},
    {"agreement", "rlhf db agreement [--json] [--db FILE]",
     "inter-annotator agreement: Cohen's kappa per annotator pair, Krippendorff's alpha overall",
     "  --json       machine-readable output\n"
     "  --db FILE    database file (default: $RLHF_DB, else rlhf.db)\n", cmd_db_agreement},
};

#define N_SUBS (sizeof k_subs / sizeof k_subs[0])

static const db_sub *find_sub(const char *name) {
    for (size_t i = 0; i < N_SUBS; i++)
        if (strcmp(k_subs[i].name, name) == 0) return &k_subs[i];
    return NULL;
}

static void list_subs(void) {
    out_printf("usage: rlhf db SUBCOMMAND [flags]\n  the feedback database (default rlhf.db; --db FILE or RLHF_DB override)\n\nsubcommands:\n");
    for (size_t i = 0; i < N_SUBS; i++) out_printf("  %-12s %s\n", k_subs[i].name, k_subs[i].help);
    out_printf("\n'rlhf db SUBCOMMAND --help' documents each one.\n");
}

int cmd_db(int argc, char **argv) {
    if (argc < 2) {
        out_error("usage: rlhf db init|migrate|stats|check|import|export|leaderboard|agreement [flags]");
        out_error("run 'rlhf db --help' for details");
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        list_subs();
        return 0;
    }
    const db_sub *sub = find_sub(argv[1]);
    if (!sub) {
        out_error("unknown db subcommand '%s' (see 'rlhf db --help')", argv[1]);
        return 2;
    }
    if (command_wants_help(argc - 1, argv + 1)) return print_help(sub);
    return sub->handler(sub, argc - 1, argv + 1);
}
