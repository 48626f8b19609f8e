/* bench_repl — the REPL's latency as a person feels it, measured on the real program in a
 * pseudo-terminal (so readline, the banner and the model load all count):
 *   start-up: from fork+exec of `rlhf chat --model MODEL` to the "> " prompt on the screen (the
 *   model loads on a thread behind it), and to the answer of a command typed at once (which
 *   waits for the model: the time until the REPL can really work);
 *   first token: from the Enter key after a prompt to the first byte of the streamed reply
 *   (prompt assembly, tokenization, prefill, one decoding step, the write).
 * Each run is a fresh process; the table gives the best and median of RUNS runs.
 *   usage: bench_repl RLHF MODEL [RUNS] [PROMPT]      (bench/run_repl_bench.sh makes a d288 model)
 * Targets (issue 16): start-up under 200 ms, first token under 50 ms. */
#include <errno.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

typedef struct {
    int fd;
    char buf[1 << 16];
    size_t len;
} screen;

/* Reads what the program writes until `pattern` appears after offset `from`; returns the time it
 * appeared and sets *at to its offset, or -1 after timeout_ms. */
static double wait_for(screen *s, const char *pattern, size_t from, size_t *at, double timeout_ms) {
    double end = now_ms() + timeout_ms;
    for (;;) {
        s->buf[s->len] = 0;
        char *p = from <= s->len ? strstr(s->buf + from, pattern) : NULL;
        if (p) {
            if (at) *at = (size_t)(p - s->buf);
            return now_ms();
        }
        double left = end - now_ms();
        if (left <= 0) return -1;
        struct pollfd pf = {s->fd, POLLIN, 0};
        int r = poll(&pf, 1, (int)left + 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) continue;
        if (s->len + 1 >= sizeof s->buf) return -1;
        ssize_t n = read(s->fd, s->buf + s->len, sizeof s->buf - 1 - s->len);
        if (n <= 0) return -1;
        s->len += (size_t)n;
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One session: returns 0 and fills the two latencies. */
static int one_run(const char *rlhf, const char *model, const char *prompt, const char *home, double *startup,
                   double *ready, double *first) {
    screen *s = calloc(1, sizeof *s);
    if (!s) return -1;
    struct winsize ws = {50, 200, 0, 0};
    double t0 = now_ms();
    pid_t pid = forkpty(&s->fd, NULL, NULL, &ws);
    if (pid < 0) {
        free(s);
        return -1;
    }
    if (pid == 0) {
        setenv("TERM", "xterm", 1);
        setenv("NO_COLOR", "1", 1);
        setenv("XDG_STATE_HOME", home, 1);
        char db[4200];
        snprintf(db, sizeof db, "%s/bench.db", home);
        execl(rlhf, rlhf, "chat", "--model", model, "--db", db, (char *)NULL);
        _exit(127);
    }
    int rc = -1;
    size_t at = 0;
    /* the first prompt (the model loads behind it; readline may write escapes first) */
    if (wait_for(s, "Ctrl-D leaves.", 0, &at, 60000) < 0) goto done;
    double t = wait_for(s, "> ", at, &at, 60000);
    if (t < 0) goto done;
    *startup = t - t0;
    /* typed at once: its answer waits for the model, so it shows when the model is ready */
    const char *set = "/set max_tokens 8\r";
    if (write(s->fd, set, strlen(set)) < 0) goto done;
    t = wait_for(s, "max_tokens = 8", at, &at, 60000);
    if (t < 0) goto done;
    *ready = t - t0;
    if (wait_for(s, "> ", at, &at, 10000) < 0) goto done;
    /* type the prompt, wait for readline's echo, then time the Enter key */
    if (write(s->fd, prompt, strlen(prompt)) < 0 || wait_for(s, prompt, at, &at, 10000) < 0) goto done;
    size_t mark = s->len;
    double enter = now_ms();
    if (write(s->fd, "\r", 1) != 1) goto done;
    /* readline ends the input line with "\r\n" (and may switch terminal modes with escape
     * sequences); the first other byte after it is the reply's first token */
    size_t nl;
    if (wait_for(s, "\n", mark, &nl, 10000) < 0) goto done;
    double got = -1;
    for (size_t scan = nl + 1;;) {
        while (scan < s->len) {
            unsigned char c = (unsigned char)s->buf[scan];
            if (c == 0x1b) { /* ESC [ params final, or ESC x */
                size_t j = scan + 1;
                if (j < s->len && s->buf[j] == '[') {
                    j++;
                    while (j < s->len && !((unsigned char)s->buf[j] >= 0x40 && (unsigned char)s->buf[j] <= 0x7e)) j++;
                }
                if (j >= s->len) break; /* incomplete: read more */
                scan = j + 1;
            } else if (c == '\r' || c == '\n') {
                scan++;
            } else {
                break;
            }
        }
        if (scan < s->len && (unsigned char)s->buf[scan] != 0x1b) break;
        if (now_ms() > enter + 10000) goto done;
        struct pollfd pf = {s->fd, POLLIN, 0};
        if (poll(&pf, 1, 100) > 0) {
            ssize_t n = read(s->fd, s->buf + s->len, sizeof s->buf - 1 - s->len);
            if (n <= 0) goto done;
            s->len += (size_t)n;
            got = now_ms();
        }
    }
    if (got < 0) got = now_ms(); /* the token came with the newline's read */
    *first = got - enter;
    if (wait_for(s, "-- ", nl, NULL, 20000) < 0) goto done;
    rc = 0;
done:
    if (write(s->fd, "\x04", 1) < 0) { /* Ctrl-D; the kill below ends it anyway */ }
    usleep(100000);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    close(s->fd);
    if (rc) fprintf(stderr, "bench_repl: a run failed; the screen was:\n%.*s\n", (int)s->len, s->buf);
    free(s);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_repl RLHF MODEL [RUNS] [PROMPT]\n");
        return 2;
    }
    int runs = argc > 3 ? atoi(argv[3]) : 5;
    const char *prompt = argc > 4 ? argv[4] : "Once upon a time there was a little dog";
    if (runs < 1 || runs > 100) runs = 5;
    char home[] = "/tmp/bench-repl-XXXXXX";
    if (!mkdtemp(home)) return 1;
    double su[100], rd[100], ft[100];
    for (int i = 0; i < runs; i++)
        if (one_run(argv[1], argv[2], prompt, home, &su[i], &rd[i], &ft[i])) return 1;
    qsort(su, (size_t)runs, sizeof su[0], cmp_double);
    qsort(ft, (size_t)runs, sizeof ft[0], cmp_double);
    qsort(rd, (size_t)runs, sizeof rd[0], cmp_double);
    printf("| what | best | median | target |\n| --- | --- | --- | --- |\n");
    printf("| start-up to prompt (%d runs) | %.0f ms | %.0f ms | 200 ms |\n", runs, su[0], su[runs / 2]);
    printf("| start-up to model ready (first command answered) | %.0f ms | %.0f ms | - |\n", rd[0], rd[runs / 2]);
    printf("| Enter to first token | %.1f ms | %.1f ms | 50 ms |\n", ft[0], ft[runs / 2]);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
    if (system(cmd)) { /* a leftover temp directory is harmless */ }
    return 0;
}
