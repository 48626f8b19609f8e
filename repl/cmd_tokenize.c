/* cmd_tokenize.c — `rlhf tokenize`, `rlhf detokenize` and `rlhf tokenizer train`.
 *
 * Thin shells over src/tok/tokenizer.h: parse flags, read stdin or corpus files, print through
 * repl/out.h. Text goes out with fwrite on out_stream() because decoded text may hold NUL bytes. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "repl/commands.h"
#include "repl/out.h"
#include "src/core/fileio.h"
#include "src/formats/model_load.h"
#include "src/tok/tokenizer.h"

/* Reads all of stdin; NULL (with a message printed) on failure. */
static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) goto nomem;
    for (;;) {
        if (n == cap) {
            char *b = realloc(buf, cap * 2 + 1);
            if (!b) goto nomem;
            buf = b;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) break;
    }
    if (ferror(stdin)) {
        out_error("reading standard input: %s", strerror(errno));
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
nomem:
    free(buf);
    out_error("out of memory reading standard input");
    return NULL;
}

static const char tokenize_help[] =
    "usage: rlhf tokenize --tokenizer PATH [--ids|--pieces] [--special] [--bos]\n"
    "  Reads UTF-8 text on standard input and prints its token ids, space separated (--ids, the\n"
    "  default), or its vocabulary pieces (--pieces).\n"
    "  -t, --tokenizer PATH  tokenizer.json, a model directory, a directory with encoder.json +\n"
    "                        vocab.bpe, a llama2.c tokenizer.bin, or a GGUF file (its vocabulary)\n"
    "      --ids             print ids (default)\n"
    "      --pieces          print pieces (\"Ġthe\", \"▁the\", \"<0x0A>\") instead of ids\n"
    "      --special         special tokens written in the text (<|endoftext|>, <s>) become their\n"
    "                        id; without it they are encoded as ordinary text\n"
    "      --bos             start with the tokenizer's BOS id\n";

int cmd_tokenize(int argc, char **argv) {
    static const struct option opts[] = {
        {"tokenizer", required_argument, NULL, 't'}, {"ids", no_argument, NULL, 'i'},
        {"pieces", no_argument, NULL, 'p'},          {"special", no_argument, NULL, 's'},
        {"bos", no_argument, NULL, 'b'},             {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    int pieces = 0;
    unsigned flags = 0;
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
        switch (c) {
        case 't': path = optarg; break;
        case 'i': pieces = 0; break;
        case 'p': pieces = 1; break;
        case 's': flags |= TOK_ENCODE_ALLOW_SPECIAL; break;
        case 'b': flags |= TOK_ENCODE_ADD_BOS; break;
        case 'h': out_printf("%s", tokenize_help); return 0;
        default: return command_usage_error("tokenize");
        }
    }
    if (!path || optind < argc) {
        if (!path) out_error("--tokenizer is required");
        else out_error("unexpected argument '%s' (the text is read from standard input)", argv[optind]);
        return command_usage_error("tokenize");
    }
    rlhf_error err = {0};
    tokenizer *t = NULL;
    if (model_load_tokenizer(&t, path, &err)) return out_fail(&err);
    size_t len;
    char *text = read_stdin(&len);
    if (!text) {
        tok_close(&t);
        return 1;
    }
    tok_ids ids = {0};
    int status = 0;
    if (tok_encode(t, text, len, flags, &ids, &err)) {
        status = out_fail(&err);
    } else {
        FILE *o = out_stream();
        for (size_t i = 0; i < ids.n; i++) {
            if (i) fputc(' ', o);
            if (pieces) fputs(tok_piece(t, ids.ids[i]), o);
            else fprintf(o, "%d", (int)ids.ids[i]);
        }
        fputc('\n', o);
    }
    tok_ids_free(&ids);
    free(text);
    tok_close(&t);
    return status;
}

static const char detokenize_help[] =
    "usage: rlhf detokenize --tokenizer PATH\n"
    "  Reads token ids (integers separated by spaces, commas or newlines) on standard input and\n"
    "  prints the text they stand for; bytes that are not valid UTF-8 come out as U+FFFD.\n"
    "  -t, --tokenizer PATH  tokenizer.json, a model directory, a directory with encoder.json +\n"
    "                        vocab.bpe, a llama2.c tokenizer.bin, or a GGUF file (its vocabulary)\n";

int cmd_detokenize(int argc, char **argv) {
    static const struct option opts[] = {
        {"tokenizer", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
        switch (c) {
        case 't': path = optarg; break;
        case 'h': out_printf("%s", detokenize_help); return 0;
        default: return command_usage_error("detokenize");
        }
    }
    if (!path || optind < argc) {
        if (!path) out_error("--tokenizer is required");
        else out_error("unexpected argument '%s' (the ids are read from standard input)", argv[optind]);
        return command_usage_error("detokenize");
    }
    rlhf_error err = {0};
    tokenizer *t = NULL;
    if (model_load_tokenizer(&t, path, &err)) return out_fail(&err);
    size_t len;
    char *input = read_stdin(&len);
    if (!input) {
        tok_close(&t);
        return 1;
    }
    tok_ids ids = {0};
    int status = 0;
    size_t line = 1;
    for (char *p = input; *p && !status;) {
        if (*p == '\n') line++;
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',' || *p == '[' || *p == ']') {
            p++;
            continue;
        }
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        size_t word = strcspn(p, " \t\r\n,[]");
        if (end == p || (size_t)(end - p) != word || errno || v < 0 || v >= tok_vocab_size(t) || !tok_piece(t, (int32_t)v)) {
            if (end == p || (size_t)(end - p) != word) out_error("stdin:%zu: '%.*s' is not a token id", line, (int)word, p);
            else out_error("stdin:%zu: token id %.*s is not in the vocabulary (size %d)", line, (int)word, p, tok_vocab_size(t));
            status = 1;
            break;
        }
        if (ids.n == ids.cap) {
            size_t cap = ids.cap ? ids.cap * 2 : 1024;
            int32_t *q = realloc(ids.ids, cap * sizeof *q);
            if (!q) {
                out_error("out of memory reading ids");
                status = 1;
                break;
            }
            ids.ids = q;
            ids.cap = cap;
        }
        ids.ids[ids.n++] = (int32_t)v;
        p = end;
    }
    if (!status) {
        char *text;
        size_t text_len;
        if (tok_decode(t, ids.ids, ids.n, &text, &text_len, &err)) {
            status = out_fail(&err);
        } else {
            fwrite(text, 1, text_len, out_stream());
            free(text);
        }
    }
    tok_ids_free(&ids);
    free(input);
    tok_close(&t);
    return status;
}

static const char train_help[] =
    "usage: rlhf tokenizer train --vocab-size N [--special TOK ...] CORPUS... --out tokenizer.json\n"
    "  Learns a byte-level BPE vocabulary (GPT-2 pre-tokenizer) from the corpus files and writes a\n"
    "  Hugging Face tokenizer.json. The same input always gives the same file.\n"
    "  -n, --vocab-size N    ids in the vocabulary: specials + 256 bytes + merges\n"
    "  -s, --special TOK     a special token (repeatable), given the first ids, e.g. <|endoftext|>\n"
    "  -o, --out PATH        the tokenizer.json to write (a directory gets PATH/tokenizer.json)\n";

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) {
    (void)sig;
    g_interrupted = 1;
}

typedef struct {
    double start;
    double last;
} train_progress;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int show_progress(void *ctx, const char *phase, long long done, long long total) {
    train_progress *p = ctx;
    double t = now_seconds();
    if (t - p->last >= 0.2 || done == total) {
        p->last = t;
        if (strcmp(phase, "count") == 0)
            out_progress("counting words: %.1f / %.1f MB", (double)done / 1e6, (double)total / 1e6);
        else
            out_progress("merges: %lld / %lld  (%.1f s)", done, total, t - p->start);
    }
    return g_interrupted;
}

static int tokenizer_train(int argc, char **argv) {
    static const struct option opts[] = {
        {"vocab-size", required_argument, NULL, 'n'}, {"special", required_argument, NULL, 's'},
        {"out", required_argument, NULL, 'o'},        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *out_path = NULL;
    long vocab_size = 0;
    const char **specials = calloc((size_t)argc + 1, sizeof *specials);
    int n_specials = 0, status = 0;
    if (!specials) {
        out_error("out of memory");
        return 1;
    }
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, "n:s:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'n': {
            char *end;
            vocab_size = strtol(optarg, &end, 10);
            if (*end || end == optarg || vocab_size < 256 || vocab_size > (1 << 22)) {
                out_error("--vocab-size '%s': expected a whole number of at least 256", optarg);
                free(specials);
                return command_usage_error("tokenizer");
            }
            break;
        }
        case 's': specials[n_specials++] = optarg; break;
        case 'o': out_path = optarg; break;
        case 'h':
            out_printf("%s", train_help);
            free(specials);
            return 0;
        default: free(specials); return command_usage_error("tokenizer");
        }
    }
    if (!vocab_size || !out_path || optind >= argc) {
        if (!vocab_size) out_error("--vocab-size is required");
        else if (!out_path) out_error("--out is required");
        else out_error("no corpus files given");
        free(specials);
        return command_usage_error("tokenizer");
    }
    char *target = NULL;
    if (file_is_dir(out_path)) {
        size_t l = strlen(out_path) + sizeof "/tokenizer.json";
        target = malloc(l);
        if (target) snprintf(target, l, "%s/tokenizer.json", out_path);
    } else {
        target = strdup(out_path);
    }
    if (!target) {
        out_error("out of memory");
        free(specials);
        return 1;
    }
    train_progress prog = {now_seconds(), 0};
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    g_interrupted = 0;
    rlhf_error err = {0};
    tokenizer *t = NULL;
    int rc = tok_train_bpe(&t, (const char *const *)(argv + optind), argc - optind, (int)vocab_size, specials, n_specials,
                           show_progress, &prog, &err);
    sigaction(SIGINT, &old, NULL);
    out_progress_end();
    if (rc == RLHF_ERR_INTERRUPTED) {
        out_error("interrupted: nothing was written");
        status = 1;
    } else if (rc) {
        status = out_fail(&err);
    } else if (tok_save(t, target, &err)) {
        status = out_fail(&err);
    } else {
        int n = tok_vocab_size(t);
        out_printf("wrote %s: %d ids (%d specials, 256 bytes, %d merges) in %.1f s\n", target, n, n_specials,
                   n - 256 - n_specials, now_seconds() - prog.start);
        if (n < vocab_size) out_printf("note: the corpus ran out of pairs to merge before %ld ids\n", vocab_size);
    }
    tok_close(&t);
    free(target);
    free(specials);
    return status;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 2) {
        out_error("missing subcommand (only 'train')");
        return command_usage_error("tokenizer");
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        out_printf("%s", train_help);
        return 0;
    }
    if (strcmp(argv[1], "train") == 0) return tokenizer_train(argc - 1, argv + 1);
    out_error("unknown subcommand 'tokenizer %s' (only 'train')", argv[1]);
    return command_usage_error("tokenizer");
}
