/* test_crash.c — a process recording annotations is killed with SIGKILL at random moments, again
 * and again; every annotation it had reported as saved must be in the database afterwards, whole
 * (a ranking with all its items and derived pairs), and the file must pass integrity_check.
 *
 * The child reports an annotation only after store_add_* returned, i.e. after COMMIT, by writing
 * (kind, id) to a pipe; the parent kills it after a random delay, which lands anywhere: inside
 * a transaction, during a commit's fsync, between commits, during open. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "feedback/store.h"
#include "src/core/rng.h"
#include "tests/test_db_util.h"
#include "tests/test_util.h"

#define N_KILLS 40
#define N_PROMPTS 8
#define K 4

typedef struct {
    char kind; /* 'r' ranking, 'p' pair, 's' rating */
    int64_t id;
} saved;

static int64_t g_gen[N_PROMPTS][K];

/* The child: annotate forever, reporting each committed id. Never returns. */
static void annotate_forever(const char *path, int fd, uint64_t seed) {
    rlhf_error err = {0};
    store *s = NULL;
    if (store_open(&s, path, &err)) {
        fprintf(stderr, "child: %s\n", err.msg);
        _exit(2);
    }
    rng_t r;
    rng_seed(&r, seed);
    store_judge j = {.annotator = "worker", .guideline_version = "crash-v1", .allow_flagged = 1};
    for (;;) {
        int p = (int)rng_below(&r, N_PROMPTS);
        store_added added;
        saved rec = {0, 0};
        int rc, what = (int)rng_below(&r, 3);
        if (what == 0) {
            int ranks[K];
            for (int i = 0; i < K; i++) ranks[i] = 1 + (int)rng_below(&r, K);
            rc = store_add_ranking(s, &j, g_gen[p], ranks, K, &added, &err);
            rec.kind = 'r';
        } else if (what == 1) {
            int a = (int)rng_below(&r, K), b = (a + 1 + (int)rng_below(&r, K - 1)) % K;
            rc = store_add_pair(s, &j, g_gen[p][a], g_gen[p][b], STORE_VERDICT_BETTER, 1, &added, &err);
            rec.kind = 'p';
        } else {
            rc = store_add_rating(s, &j, g_gen[p][rng_below(&r, K)], 1 + (int)rng_below(&r, 5), "helpful", &added, &err);
            rec.kind = 's';
        }
        if (rc) {
            fprintf(stderr, "child: %s\n", err.msg);
            _exit(3);
        }
        rec.id = added.id;
        if (write(fd, &rec, sizeof rec) != (ssize_t)sizeof rec) _exit(4);
    }
}

/* Appends one reported annotation to the growing log. */
static void log_push(saved **log, size_t *n, size_t *cap, saved rec) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 1024;
        *log = realloc(*log, *cap * sizeof **log);
        if (!*log) abort();
    }
    (*log)[(*n)++] = rec;
}

int main(void) {
    char path[4200];
    snprintf(path, sizeof path, "%s/crash.db", test_tmpdir());
    unlink(path);
    rlhf_error err = {0};
    store *s = NULL;
    if (store_open(&s, path, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    for (int p = 0; p < N_PROMPTS; p++) {
        char text[64];
        snprintf(text, sizeof text, "Prompt %d", p);
        int64_t prompt = 0;
        store_prompt pr = {.text = text};
        CHECK(store_add_prompt(s, &pr, &prompt, &err) == 0, "prompt: %s", err.msg);
        for (int i = 0; i < K; i++) {
            char answer[64];
            snprintf(answer, sizeof answer, "Answer %c to prompt %d.", 'A' + i, p);
            store_generation g = {.prompt_id = prompt, .text = answer, .n_tokens = -1, .logprob = 0, .latency_ms = 0};
            CHECK(store_add_generation(s, &g, &g_gen[p][i], &err) == 0, "generation: %s", err.msg);
        }
    }
    store_close(&s);

    saved *log = NULL;
    size_t n_saved = 0, cap = 0;
    rng_t r;
    rng_seed(&r, 20240601);
    int kills = 0, early_exits = 0, after_first = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int it = 0; it < N_KILLS; it++) {
        int fds[2];
        if (pipe(fds) != 0) return 1;
        pid_t child = fork();
        if (child == 0) {
            close(fds[0]);
            annotate_forever(path, fds[1], 1000 + (uint64_t)it);
        }
        close(fds[1]);
        /* Even runs are killed 0-60 ms after the start (from "still opening" on); odd runs 0-60 ms
         * after their first reported commit, so kills land among commits however slow the machine
         * (a sanitizer build under load can take longer than 60 ms just to open). */
        if (it % 2 == 1) {
            saved first;
            if (read(fds[0], &first, sizeof first) == (ssize_t)sizeof first) {
                log_push(&log, &n_saved, &cap, first);
                after_first++;
            }
        }
        useconds_t delay = (useconds_t)rng_below(&r, 60000);
        usleep(delay);
        kill(child, SIGKILL);
        int status = 0;
        waitpid(child, &status, 0);
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) kills++;
        else early_exits++;
        saved rec;
        while (read(fds[0], &rec, sizeof rec) == (ssize_t)sizeof rec) log_push(&log, &n_saved, &cap, rec);
        close(fds[0]);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(kills == N_KILLS && early_exits == 0, "the child was killed by SIGKILL each time (%d of %d; %d exited early)", kills,
          N_KILLS, early_exits);
    CHECK(after_first == N_KILLS / 2 && n_saved > (size_t)after_first,
          "annotations were saved between kills (%zu; %d runs killed after a first commit)", n_saved, after_first);

    /* every reported annotation is present and whole */
    size_t missing = 0, partial = 0;
    for (size_t i = 0; i < n_saved; i++) {
        char sql[256];
        const char *table = log[i].kind == 'r' ? "rankings" : log[i].kind == 'p' ? "pairs" : "ratings";
        snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE id = %lld", table, (long long)log[i].id);
        if (test_query_int(path, sql) != 1) missing++;
        if (log[i].kind == 'r') {
            snprintf(sql, sizeof sql, "SELECT count(*) FROM ranking_items WHERE ranking_id = %lld", (long long)log[i].id);
            if (test_query_int(path, sql) != K) partial++;
        }
    }
    CHECK(missing == 0, "every annotation reported as saved is present (%zu of %zu missing)", missing, n_saved);
    CHECK(partial == 0, "no ranking is half-stored (%zu)", partial);
    long long audit = test_query_int(path, "SELECT count(*) FROM audit WHERE action = 'add'");
    long long rows = test_query_int(path, "SELECT (SELECT count(*) FROM rankings) + (SELECT count(*) FROM pairs WHERE ranking_id IS NULL) + (SELECT count(*) FROM ratings)");
    CHECK(audit == rows, "each stored judgement has its audit entry and no audit entry lacks its judgement (%lld, %lld)",
          audit, rows);
    CHECK(rows >= (long long)n_saved, "at least the reported ones are stored (%lld >= %zu)", rows, n_saved);
    char *ic = test_query_rows(path, "PRAGMA integrity_check");
    CHECK(strcmp(ic, "ok\n") == 0, "PRAGMA integrity_check: %s", ic);
    free(ic);
    CHECK(store_open(&s, path, &err) == 0, "the database opens after the crashes: %s", err.msg);
    store_check_report rep = {0};
    CHECK(s && store_check(s, &rep, &err) == 0 && rep.n == 0, "store check: derived pairs consistent (%zu problems%s%s)",
          rep.n, rep.n ? ": " : "", rep.n ? rep.problems[0] : "");
    store_check_report_free(&rep);
    store_close(&s);
    fprintf(stderr, "crash test: %d SIGKILLs, %zu annotations reported saved, %lld stored, %.1f s\n", kills, n_saved, rows,
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    free(log);
    return test_finish("test_crash");
}
