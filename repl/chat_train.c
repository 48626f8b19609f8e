/* chat_train.c — the REPL's /train and /run show: they run the same `rlhf` subcommands a user
 * would type (this executable, as a child process on the session's model and database), so the
 * REPL trains exactly as the CLI does: same flags, progress line, Ctrl-C (the child saves its
 * checkpoint; the session goes on), runs recorded in the database. A trained policy is loaded
 * back into the session when the run is done. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "repl/chat.h"
#include "repl/out.h"

int chat_run_self(char **argv, const char *stdout_path) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (stdout_path) {
            int fd = open(stdout_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0) _exit(126);
            close(fd);
        }
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1; /* Ctrl-C reaches the child too: wait for it to save and exit */
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static int dir_has(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    struct stat st;
    if (!p) return 0;
    snprintf(p, n, "%s/%s", dir, name);
    int ok = stat(p, &st) == 0;
    free(p);
    return ok;
}

static int has_word(const chat_input *in, const char *w) {
    for (int i = 1; i < in->n_words; i++)
        if (strcmp(in->words[i], w) == 0) return 1;
    return 0;
}

int chat_cmd_train(chat_session *s, const chat_input *in) {
    static const char *const kinds[] = {"sft", "dpo", "grpo", "rloo", "reward", "ppo", "kto"};
    const char *k = in->n_words ? in->words[0] : "";
    int known = 0;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) known |= strcmp(k, kinds[i]) == 0;
    if (!known) return chat_fail(s, RLHF_ERR_INVALID, "usage: /train sft|dpo|grpo|rloo|reward|ppo|kto [--out DIR] [FLAGS]");
    if (!s->loaded || !s->model_path) return chat_fail(s, RLHF_ERR_INVALID, "/train: load a model first (/model load PATH)");
    int rc = chat_store_open(s);
    if (rc) return rc;
    /* --out DIR, or a new directory beside the database */
    const char *out = NULL;
    for (int i = 1; i + 1 < in->n_words; i++)
        if (strcmp(in->words[i], "--out") == 0) out = in->words[i + 1];
    char made[8300];
    if (!out) {
        char stamp[32];
        time_t now = time(NULL);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", s->db_path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
        snprintf(made, sizeof made, "%s/models/%s-%s", dir, k, stamp);
        out = made;
    }
    /* rlhf KIND [train] --model M --db DB --out DIR FLAGS... */
    char *argv[CHAT_MAX_WORDS + 16];
    int n = 0;
    argv[n++] = "rlhf";
    argv[n++] = (char *)k;
    if (strcmp(k, "reward") == 0) argv[n++] = "train";
    argv[n++] = "--model";
    argv[n++] = s->model_path;
    /* The online trainers (grpo, rloo, ppo) take the session's stored prompts unless --prompts names
     * a file; then the database only records the run and its rollouts. */
    int online = strcmp(k, "grpo") == 0 || strcmp(k, "rloo") == 0 || strcmp(k, "ppo") == 0;
    argv[n++] = online && has_word(in, "--prompts") ? "--runs-db" : "--db";
    argv[n++] = s->db_path;
    /* Their reward: --reward DIR or --reward-fn NAME as given, else the session's last /train reward. */
    if (online && !has_word(in, "--reward") && !has_word(in, "--reward-fn")) {
        if (!s->reward_path)
            return chat_fail(s, RLHF_ERR_INVALID,
                             "/train %s: needs a reward: --reward RM_DIR, %s/train reward first (its model is then used)", k,
                             strcmp(k, "ppo") == 0 ? "" : "--reward-fn toy|contains:TEXT, or ");
        argv[n++] = "--reward";
        argv[n++] = s->reward_path;
    }
    if (!has_word(in, "--out")) {
        argv[n++] = "--out";
        argv[n++] = (char *)out;
    }
    for (int i = 1; i < in->n_words && n < (int)(sizeof argv / sizeof *argv) - 1; i++) argv[n++] = in->words[i];
    argv[n] = NULL;
    out_printf("%srunning:", chat_dim(s));
    for (int i = 0; i < n; i++) out_printf(" %s", argv[i]);
    out_printf("%s\n", chat_reset(s));
    int st = chat_run_self(argv, NULL);
    if (st == 130) return chat_fail(s, RLHF_ERR_INTERRUPTED, "/train %s: stopped; what it saved is in %s", k, out);
    if (st != 0) return chat_fail(s, RLHF_ERR_INVALID, "/train %s: the trainer exited with status %d (its message is above)", k, st);
    if (strcmp(k, "reward") == 0) {
        char *keep = strdup(out);
        if (!keep) return chat_fail(s, RLHF_ERR_NOMEM, "out of memory");
        free(s->reward_path);
        s->reward_path = keep;
        out_printf("reward model saved to %s; /train ppo|grpo|rloo use it unless given --reward (score with: rlhf score "
                   "--model %s ...)\n", out, out);
        return 0;
    }
    /* load what was trained: a PEFT adapter on the current base, or a model directory */
    char *base = strdup(s->model_path);
    if (!base) return chat_fail(s, RLHF_ERR_NOMEM, "out of memory");
    rc = dir_has(out, "adapter_config.json") ? chat_model_load(s, base, out) : chat_model_load(s, out, NULL);
    free(base);
    if (rc) return rc;
    out_printf("loaded the trained model from %s; /compare or /candidates to judge it against the old one\n", out);
    return 0;
}

int chat_cmd_run(chat_session *s, const chat_input *in) {
    if (in->n_words != 2 || strcmp(in->words[0], "show") != 0) return chat_fail(s, RLHF_ERR_INVALID, "usage: /run show ID");
    int rc = chat_store_open(s);
    if (rc) return rc;
    char *argv[] = {"rlhf", "runs", "show", in->words[1], "--db", s->db_path, NULL};
    int st = chat_run_self(argv, NULL);
    return st == 0 ? 0 : chat_fail(s, RLHF_ERR_INVALID, "/run show %s: failed (status %d)", in->words[1], st);
}
