/* line_read.c — readline on a terminal, getline elsewhere, and the logical-input rules shared by
 * both (trailing `\`, `"""` blocks). See line_read.h.
 *
 * Readline runs in its callback mode: this file owns the wait for input (select), so a Ctrl-C
 * at the prompt is a flag seen between keystrokes, and the line is reset cleanly, instead of a
 * signal arriving inside readline's own read. */
#include "repl/line_read.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "src/core/fileio.h"

#define HISTORY_KEEP 2000

struct line_reader {
    FILE *in;
    int tty;
    char *history_path;
    line_complete_fn complete;
    void *user;
    int line_no;      /* physical lines read so far */
    int start_line;   /* where the last logical input started */
};

static volatile sig_atomic_t g_interrupt;
static volatile sig_atomic_t g_winch;
static line_reader *g_active; /* the reader whose completer readline calls */

volatile sig_atomic_t *line_read_interrupt_flag(void) { return &g_interrupt; }

static void on_sigint(int sig) {
    (void)sig;
    g_interrupt = 1;
}

static void on_sigwinch(int sig) {
    (void)sig;
    g_winch = 1;
}

void line_read_install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_sigint; /* no SA_RESTART: a blocked read or select returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_sigwinch;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGWINCH, &sa, NULL);
}

/* ---- completion ---- */

static char **g_cands;
static size_t g_cand_i;

static char *cand_generator(const char *text, int state) {
    if (!state) g_cand_i = 0;
    size_t n = strlen(text);
    while (g_cands && g_cands[g_cand_i]) {
        const char *c = g_cands[g_cand_i++];
        if (strncmp(c, text, n) == 0) return strdup(c);
    }
    return NULL;
}

static void cands_free(void) {
    for (size_t i = 0; g_cands && g_cands[i]; i++) free(g_cands[i]);
    free(g_cands);
    g_cands = NULL;
}

static char **attempt_completion(const char *text, int start, int end) {
    (void)end;
    line_reader *lr = g_active;
    rl_attempted_completion_over = 1;
    if (!lr || !lr->complete) return NULL;
    int files = 0;
    char *head = strndup(rl_line_buffer, (size_t)start);
    if (!head) return NULL;
    cands_free();
    g_cands = lr->complete(lr->user, head, start, text, &files);
    free(head);
    if (files) {
        rl_attempted_completion_over = 0; /* readline's own file-name completion */
        cands_free();
        return NULL;
    }
    char **m = g_cands ? rl_completion_matches(text, cand_generator) : NULL;
    cands_free();
    return m;
}

/* ---- opening ---- */

static char *default_history_path(void) {
    const char *state = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    char buf[4096];
    if (state && state[0] == '/') snprintf(buf, sizeof buf, "%s/rlhf/history", state);
    else if (home && home[0]) snprintf(buf, sizeof buf, "%s/.local/state/rlhf/history", home);
    else return NULL;
    return strdup(buf);
}

int line_read_open(line_reader **out, const line_read_params *p, rlhf_error *err) {
    *out = NULL;
    line_reader *lr = calloc(1, sizeof *lr);
    if (!lr) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    lr->in = p && p->in ? p->in : stdin;
    lr->tty = isatty(fileno(lr->in)) && isatty(STDOUT_FILENO) && !(p && p->force_plain);
    lr->complete = p ? p->complete : NULL;
    lr->user = p ? p->user : NULL;
    if (lr->tty) {
        if (p && p->history_path) lr->history_path = p->history_path[0] ? strdup(p->history_path) : NULL;
        else lr->history_path = default_history_path();
        if (lr->history_path) {
            char *dir = strdup(lr->history_path);
            char *slash = dir ? strrchr(dir, '/') : NULL;
            if (slash && slash != dir) {
                *slash = 0;
                file_mkdir_p(dir, NULL);
            }
            free(dir);
            using_history();
            stifle_history(HISTORY_KEEP);
            read_history(lr->history_path);
        }
        rl_instream = lr->in;
        rl_outstream = stdout;
        rl_readline_name = "rlhf";
        rl_catch_signals = 0; /* our handler; see the top of the file */
        rl_catch_sigwinch = 0;
        rl_attempted_completion_function = attempt_completion;
        g_active = lr;
    }
    *out = lr;
    return RLHF_OK;
}

void line_read_close(line_reader **lr) {
    if (!lr || !*lr) return;
    if ((*lr)->tty) {
        if ((*lr)->history_path) history_truncate_file((*lr)->history_path, HISTORY_KEEP);
        if (g_active == *lr) g_active = NULL;
        clear_history();
    }
    free((*lr)->history_path);
    free(*lr);
    *lr = NULL;
}

int line_read_line_no(const line_reader *lr) { return lr->start_line; }
int line_read_interactive(const line_reader *lr) { return lr->tty; }
const char *line_read_history_path(const line_reader *lr) { return lr->history_path; }

/* ---- one physical line ---- */

enum { PHYS_LINE = 1, PHYS_EOF = 0, PHYS_INTERRUPTED = -1 };

static char *g_cb_line;
static int g_cb_done;

static void on_line(char *line) {
    g_cb_line = line;
    g_cb_done = 1;
    rl_callback_handler_remove();
}

static int read_tty(line_reader *lr, const char *prompt, char **out) {
    g_cb_done = 0;
    g_cb_line = NULL;
    g_interrupt = 0;
    rl_callback_handler_install(prompt, on_line);
    int fd = fileno(lr->in);
    while (!g_cb_done) {
        if (g_winch) {
            g_winch = 0;
            rl_resize_terminal();
        }
        fd_set fds;
        FD_ZERO(&fds);
        FD_SET(fd, &fds);
        int r = select(fd + 1, &fds, NULL, NULL, NULL);
        if (g_interrupt) {
            g_interrupt = 0;
            /* Ctrl-C: drop what was typed, start a fresh prompt */
            rl_free_line_state();
            rl_callback_sigcleanup();
            rl_replace_line("", 0);
            rl_crlf();
            rl_callback_handler_remove();
            return PHYS_INTERRUPTED;
        }
        if (r < 0) {
            if (errno == EINTR) continue;
            rl_callback_handler_remove();
            return PHYS_EOF;
        }
        rl_callback_read_char();
    }
    *out = g_cb_line;
    return g_cb_line ? PHYS_LINE : PHYS_EOF;
}

static int read_plain(line_reader *lr, char **out) {
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;
    for (;;) {
        errno = 0;
        n = getline(&buf, &cap, lr->in);
        if (n >= 0) break;
        if (errno == EINTR && !feof(lr->in)) {
            clearerr(lr->in);
            continue;
        }
        free(buf);
        return PHYS_EOF;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = 0;
    *out = buf;
    return PHYS_LINE;
}

static int read_physical(line_reader *lr, const char *prompt, char **out) {
    *out = NULL;
    int rc = lr->tty ? read_tty(lr, prompt, out) : read_plain(lr, out);
    if (rc == PHYS_LINE) lr->line_no++;
    return rc;
}

/* ---- logical inputs ---- */

static int append(char **acc, size_t *len, const char *s, size_t n, int newline) {
    char *grown = realloc(*acc, *len + n + 2);
    if (!grown) return -1;
    *acc = grown;
    if (newline) grown[(*len)++] = '\n';
    memcpy(grown + *len, s, n);
    *len += n;
    grown[*len] = 0;
    return 0;
}

static int is_block_mark(const char *s) {
    while (*s == ' ' || *s == '\t') s++;
    if (strncmp(s, "\"\"\"", 3) != 0) return 0;
    s += 3;
    while (*s == ' ' || *s == '\t') s++;
    return *s == 0;
}

static void history_add(line_reader *lr, const char *line) {
    if (!lr->tty || !line[0]) return;
    HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
    if (last && strcmp(last->line, line) == 0) return;
    add_history(line);
    if (!lr->history_path) return;
    /* appended at once, so a second session (or a crash) sees every line */
    if (access(lr->history_path, F_OK) != 0) write_history(lr->history_path);
    else append_history(1, lr->history_path);
}

int line_read(line_reader *lr, const char *prompt, char **line) {
    *line = NULL;
    for (;;) {
        char *acc = NULL;
        size_t len = 0;
        int block = 0, started = 0, rc, oom = 0;
        const char *p = prompt;
        for (;;) {
            char *phys = NULL;
            rc = read_physical(lr, p, &phys);
            if (rc != PHYS_LINE) break;
            if (!started) lr->start_line = lr->line_no;
            started = 1;
            size_t n = strlen(phys);
            p = "... ";
            if (block) { /* inside """ ... """: lines joined with newlines, blank ones kept */
                int end = is_block_mark(phys);
                if (!end) oom = append(&acc, &len, phys, n, block == 2);
                block = 2;
                free(phys);
                if (end || oom) break;
                continue;
            }
            if (!acc && is_block_mark(phys)) {
                free(phys);
                block = 1;
                continue;
            }
            int more = n > 0 && phys[n - 1] == '\\';
            if (more) n--;
            /* a continued line keeps its line break: a prompt's shape is the user's */
            oom = append(&acc, &len, phys, n, 0) || (more && append(&acc, &len, "", 0, 1));
            free(phys);
            if (!more || oom) break;
        }
        if (oom) {
            free(acc);
            return 0;
        }
        if (rc == PHYS_INTERRUPTED) {
            free(acc);
            continue; /* a fresh prompt */
        }
        if (!started) return 0;
        if (!acc && !(acc = calloc(1, 1))) return 0;
        if (rc == PHYS_EOF && len && acc[len - 1] == '\n') acc[--len] = 0;
        history_add(lr, acc);
        *line = acc;
        return 1;
    }
}
