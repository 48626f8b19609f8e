/* test_concurrency.c — several processes on one database at once: two annotators recording
 * judgements in tight loops, a third process importing a large JSONL file in one long
 * transaction, and a reader computing datasets and statistics. Nothing may be lost, and no
 * process may see an error at all, in particular not "database is locked": every writer waits
 * its turn (BEGIN IMMEDIATE with a retry loop). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "feedback/store.h"
#include "src/core/fileio.h"
#include "src/core/rng.h"
#include "tests/test_db_util.h"
#include "tests/test_util.h"

#define N_PER_WRITER 150
#define N_IMPORT 3000
#define N_PROMPTS 6
#define K 3

static int64_t g_gen[N_PROMPTS][K];

typedef struct {
    char kind;
    int64_t id;
} saved;

/* Writer: N judgements by `annotator`; reports each id; exit status 0 only if all succeeded.
 * Errors are written to the pipe's partner stream (stderr) and make the exit status 1. */
static int writer(const char *path, const char *annotator, int fd, uint64_t seed) {
    rlhf_error err = {0};
    store *s = NULL;
    if (store_open(&s, path, &err)) {
        fprintf(stderr, "%s: open: %s\n", annotator, err.msg);
        return 1;
    }
    rng_t r;
    rng_seed(&r, seed);
    store_judge j = {.annotator = annotator, .allow_flagged = 1};
    for (int i = 0; i < N_PER_WRITER; i++) {
        int p = (int)rng_below(&r, N_PROMPTS), rc;
        store_added added;
        saved rec;
        if (i % 2 == 0) {
            int ranks[K] = {1 + (int)rng_below(&r, K), 1 + (int)rng_below(&r, K), 1 + (int)rng_below(&r, K)};
            rc = store_add_ranking(s, &j, g_gen[p], ranks, K, &added, &err);
            rec.kind = 'r';
        } else {
            rc = store_add_pair(s, &j, g_gen[p][0], g_gen[p][1 + (int)rng_below(&r, K - 1)],
                                rng_below(&r, 2) ? STORE_VERDICT_BETTER : STORE_VERDICT_TIE, 1, &added, &err);
            rec.kind = 'p';
        }
        if (rc) {
            fprintf(stderr, "%s: judgement %d: %s\n", annotator, i, err.msg);
            store_close(&s);
            return 1;
        }
        rec.id = added.id;
        if (write(fd, &rec, sizeof rec) != (ssize_t)sizeof rec) return 1;
    }
    store_close(&s);
    return 0;
}

static int importer(const char *path, const char *file) {
    rlhf_error err = {0};
    store *s = NULL;
    if (store_open(&s, path, &err)) {
        fprintf(stderr, "importer: open: %s\n", err.msg);
        return 1;
    }
    store_import_params p = {STORE_FORMAT_TRL, 1, "bulk", 0};
    store_import_report rep;
    int rc = store_import_jsonl(s, file, &p, &rep, &err);
    int bad = rc || rep.n_records != N_IMPORT;
    if (bad) fprintf(stderr, "importer: %s (%zu records)\n", err.msg, rep.n_records);
    store_import_report_free(&rep);
    store_close(&s);
    return bad;
}

static int reader(const char *path, int rounds) {
    rlhf_error err = {0};
    store *s = NULL;
    if (store_open(&s, path, &err)) {
        fprintf(stderr, "reader: open: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < rounds; i++) {
        store_counts c;
        pref_dataset d;
        pref_dataset_init(&d);
        if (store_get_counts(s, &c, &err) || store_get_pref_dataset(s, NULL, &d, &err)) {
            fprintf(stderr, "reader: round %d: %s\n", i, err.msg);
            pref_dataset_free(&d);
            store_close(&s);
            return 1;
        }
        pref_dataset_free(&d);
        usleep(2000);
    }
    store_close(&s);
    return 0;
}

int main(void) {
    char path[4200], file[4200], errlog[4200];
    snprintf(path, sizeof path, "%s/concurrent.db", test_tmpdir());
    snprintf(file, sizeof file, "%s/bulk.jsonl", test_tmpdir());
    snprintf(errlog, sizeof errlog, "%s/children.err", test_tmpdir());
    unlink(path);
    rlhf_error err = {0};
    store *s = NULL;
    if (store_open(&s, path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    for (int p = 0; p < N_PROMPTS; p++) {
        char text[64];
        snprintf(text, sizeof text, "Shared prompt %d", p);
        int64_t prompt = 0;
        store_prompt pr = {.text = text};
        CHECK(store_add_prompt(s, &pr, &prompt, &err) == 0, "prompt");
        for (int i = 0; i < K; i++) {
            char answer[64];
            snprintf(answer, sizeof answer, "Reply %d to %d.", i, p);
            store_generation g = {.prompt_id = prompt, .text = answer, .n_tokens = -1, .logprob = 0, .latency_ms = 0};
            CHECK(store_add_generation(s, &g, &g_gen[p][i], &err) == 0, "generation");
        }
    }
    store_close(&s);
    FILE *f = fopen(file, "w");
    for (int i = 0; i < N_IMPORT; i++)
        fprintf(f, "{\"prompt\":\"bulk prompt %d\",\"chosen\":\"good answer %d\",\"rejected\":\"bad answer %d\"}\n", i % 500, i, i);
    fclose(f);

    /* children write their errors to one file so the parent can look for "locked" */
    FILE *log = fopen(errlog, "w+");
    int fds[2][2];
    pid_t pids[4];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int w = 0; w < 2; w++) {
        if (pipe(fds[w]) != 0) return 1;
    }
    for (int c = 0; c < 4; c++) {
        pids[c] = fork();
        if (pids[c] == 0) {
            dup2(fileno(log), 2);
            for (int w = 0; w < 2; w++) { /* keep only our own write end, so EOF means "done" */
                close(fds[w][0]);
                if (w != c) close(fds[w][1]);
            }
            int status;
            if (c < 2) {
                status = writer(path, c == 0 ? "ann-0" : "ann-1", fds[c][1], 77 + (uint64_t)c);
            } else if (c == 2) {
                status = importer(path, file);
            } else {
                status = reader(path, 60);
            }
            _exit(status);
        }
    }
    saved *got[2] = {malloc(N_PER_WRITER * sizeof(saved)), malloc(N_PER_WRITER * sizeof(saved))};
    size_t n_got[2] = {0, 0};
    for (int w = 0; w < 2; w++) {
        close(fds[w][1]);
        saved rec;
        while (n_got[w] < N_PER_WRITER && read(fds[w][0], &rec, sizeof rec) == (ssize_t)sizeof rec) got[w][n_got[w]++] = rec;
        close(fds[w][0]);
    }
    int all_ok = 1;
    for (int c = 0; c < 4; c++) {
        int status = 0;
        waitpid(pids[c], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) all_ok = 0;
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "process %d finished without error (status %d)", c, status);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fflush(log);
    rewind(log);
    char line[1024];
    int locked = 0, lines = 0;
    while (fgets(line, sizeof line, log)) {
        lines++;
        fprintf(stderr, "child said: %s", line);
        if (strstr(line, "locked")) locked = 1;
    }
    fclose(log);
    CHECK(!locked && lines == 0, "no process reported any error, \"database is locked\" least of all");
    CHECK(all_ok, "all four processes succeeded");
    CHECK(n_got[0] == N_PER_WRITER && n_got[1] == N_PER_WRITER, "each writer reported %d judgements (%zu, %zu)",
          N_PER_WRITER, n_got[0], n_got[1]);
    size_t missing = 0;
    for (int w = 0; w < 2; w++)
        for (size_t i = 0; i < n_got[w]; i++) {
            char sql[160];
            snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE id = %lld", got[w][i].kind == 'r' ? "rankings" : "pairs",
                     (long long)got[w][i].id);
            if (test_query_int(path, sql) != 1) missing++;
        }
    CHECK(missing == 0, "nothing is lost: every reported judgement is stored (%zu missing)", missing);
    CHECK(test_query_int(path, "SELECT count(*) FROM rankings") == N_PER_WRITER, "all %d rankings (75 + 75)", N_PER_WRITER);
    CHECK(test_query_int(path, "SELECT count(*) FROM pairs WHERE ranking_id IS NULL AND import_id IS NULL") == N_PER_WRITER,
          "all %d direct pairs", N_PER_WRITER);
    CHECK(test_query_int(path, "SELECT count(*) FROM pairs WHERE import_id IS NOT NULL") == N_IMPORT, "all %d imported pairs",
          N_IMPORT);
    char *ic = test_query_rows(path, "PRAGMA integrity_check");
    CHECK(strcmp(ic, "ok\n") == 0, "integrity: %s", ic);
    free(ic);
    fprintf(stderr, "concurrency: 2 x %d judgements + %d-record import + reader in %.2f s\n", N_PER_WRITER, N_IMPORT,
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    free(got[0]);
    free(got[1]);
    return test_finish("test_concurrency");
}
