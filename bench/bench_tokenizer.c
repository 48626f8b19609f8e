/* bench_tokenizer.c — encode throughput in MB/s on tinyshakespeare: GPT-2's vocabulary here
 * against OpenAI's tiktoken (npm package, encoding "gpt2", run with node) in the same run, plus the
 * other tokenizer kinds for information. Best of RUNS runs each; the first run of ours (empty
 * word cache) is shown too. Never part of the test suite.
 *   bash bench/run_tokenizer_bench.sh build      (installs tiktoken into build/tiktoken-node)
 *   NODE_PATH=.../node_modules build/bench/bench_tokenizer [RUNS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/core/fileio.h"
#include "src/tok/tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static char g_data[4096];
static const char *data_path(const char *rel) {
    const char *root = getenv("RLHF_SHARED_DATA");
    snprintf(g_data, sizeof g_data, "%s/%s", root && *root ? root : "../shared/data", rel);
    return g_data;
}

/* Best and first-run MB/s of encoding text with the tokenizer at rel; 0 on failure. */
static double bench(const char *rel, const char *text, size_t len, int runs, double *first, size_t *n_tokens) {
    rlhf_error err = {0};
    tokenizer *t = NULL;
    if (tok_load(&t, data_path(rel), &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 0;
    }
    tok_ids ids = {0};
    double best = 0;
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        tok_encode(t, text, len, 0, &ids, &err);
        double mbs = (double)len / (now() - t0) / 1e6;
        if (r == 0) *first = mbs;
        if (mbs > best) best = mbs;
    }
    *n_tokens = ids.n;
    tok_ids_free(&ids);
    tok_close(&t);
    return best;
}

int main(int argc, char **argv) {
    int runs = argc > 1 ? atoi(argv[1]) : 5;
    if (runs < 1) runs = 1;
    char *text;
    size_t len;
    rlhf_error err = {0};
    const char *corpus = data_path("tinyshakespeare/input.txt");
    char corpus_path[4096];
    snprintf(corpus_path, sizeof corpus_path, "%s", corpus);
    if (file_read_all(corpus_path, &text, &len, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    printf("encode throughput on tinyshakespeare (%.2f MB), best of %d runs\n\n", (double)len / 1e6, runs);
    printf("%-34s %10s %12s %10s\n", "tokenizer", "MB/s", "first run", "tokens");
    double first;
    size_t n;
    double ours = bench("gpt2", text, len, runs, &first, &n);
    printf("%-34s %10.1f %12.1f %10zu\n", "rlhf.c gpt2 (encoder.json)", ours, first, n);
    size_t gpt2_tokens = n;

    /* tiktoken, same file, same machine, same moment */
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "node '%s' '%s' %d 2>&1", TIKTOKEN_SCRIPT, corpus_path, runs);
    FILE *p = popen(cmd, "r");
    char line[4096] = "";
    double tiktoken = 0;
    long tiktoken_tokens = 0;
    if (p) {
        while (fgets(line, sizeof line, p)) {
            const char *m = strstr(line, "\"mb_per_s\":");
            const char *k = strstr(line, "\"tokens\":");
            if (m) tiktoken = atof(m + 11);
            if (k) tiktoken_tokens = atol(k + 9);
        }
        pclose(p);
    }
    if (tiktoken > 0) printf("%-34s %10.1f %12s %10ld\n", "tiktoken (npm, \"gpt2\")", tiktoken, "", tiktoken_tokens);
    else printf("%-34s %10s   (node or the tiktoken package missing: set NODE_PATH)\n", "tiktoken (npm, \"gpt2\")", "-");

    double sp = bench("sp-bpe-32k", text, len, runs, &first, &n);
    printf("%-34s %10.1f %12.1f %10zu\n", "rlhf.c sp-bpe-32k (tokenizer.json)", sp, first, n);
    double l3 = bench("llama3-tokenizer", text, len, runs, &first, &n);
    printf("%-34s %10.1f %12.1f %10zu\n", "rlhf.c llama3 (PCRE2 regex)", l3, first, n);
    if (tiktoken > 0)
        printf("\ngpt2: rlhf.c / tiktoken = %.2fx; token counts %s\n", ours / tiktoken,
               (long)gpt2_tokens == tiktoken_tokens ? "agree" : "DIFFER");
    free(text);
    return 0;
}
