/* cmd_model.c — `rlhf model new|convert|info`, `rlhf loss` and `rlhf logits`.
 *
 * Thin shells over the engine: flags become a model_config or a token list, the work is
 * checkpoint_save / model_load_weights / llama2c_load / model_forward / model_xent /
 * model_backward, and the results are printed as text or (--json) as one JSON object.
 * Exit status: 0 done, 1 the work failed (the library's message is printed), 2 bad usage. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repl/commands.h"
#include "repl/out.h"
#include "src/formats/checkpoint.h"
#include "src/core/fileio.h"
#include "src/formats/llama2c.h"
#include "src/model/lora.h"
#include "src/model/model.h"
#include "src/formats/model_load.h"
#include "src/formats/safetensors.h"
#include "src/train/score_train.h"

/* ---- shared helpers ---- */

static int usage_error(const char *usage, const char *fmt, const char *arg) {
    if (fmt) out_error(fmt, arg);
    out_error("usage: %s", usage);
    return 2;
}

/* Reports a getopt_long failure (opterr is off so getopt itself prints nothing). */
static int getopt_error(const char *usage, int c, char **argv) {
    const char *arg = argv[optind - 1];
    if (c == ':') return usage_error(usage, "option '%s' needs a value", arg);
    return usage_error(usage, "unknown option '%s'", arg);
}

static int parse_int_flag(const char *usage, const char *flag, const char *v, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        out_error("--%s: expected an integer in %d..%d, got '%s'", flag, lo, hi, v);
        out_error("usage: %s", usage);
        return 2;
    }
    *out = (int)x;
    return 0;
}

/* "1 2 3" or "1,2,3" -> ids. Returns 2 (usage) on a malformed list. *out is malloc'd. */
static int parse_tokens(const char *usage, const char *s, int32_t **out, int *n) {
    *out = NULL;
    *n = 0;
    size_t cap = strlen(s) / 2 + 2;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) {
        out_error("out of memory");
        return 1;
    }
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == ',') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || end == p || x < 0 || x > INT32_MAX || (*end && !strchr(" \t\n,", *end))) {
            int len = (int)strcspn(p, " \t\n,");
            out_error("--tokens: '%.*s' is not a token id (a non-negative integer)", len, p);
            out_error("usage: %s", usage);
            free(ids);
            return 2;
        }
        ids[(*n)++] = (int32_t)x;
        p = end;
    }
    *out = ids;
    return 0;
}

static void fmt_count(char *buf, size_t n, size_t v) {
    char tmp[32];
    int len = snprintf(tmp, sizeof tmp, "%zu", v), k = 0;
    for (int i = 0; i < len && (size_t)k + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) buf[k++] = ',';
        buf[k++] = tmp[i];
    }
    buf[k] = '\0';
}

static void fmt_bytes(char *buf, size_t n, double b) {
    if (b >= 1024.0 * 1024 * 1024) snprintf(buf, n, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024) snprintf(buf, n, "%.1f MiB", b / (1024.0 * 1024));
    else snprintf(buf, n, "%.1f KiB", b / 1024.0);
}

static const char *rope_name(model_rope_layout l) { return l == MODEL_ROPE_INTERLEAVED ? "interleaved" : "half-split"; }

/* "llama, 5 layers, dim 64, 8 heads (4 kv), ffn 172, vocab 512, context 512, tied" */
static void describe(char *buf, size_t n, const model_config *c) {
    char kv[32] = "";
    if (c->n_kv_heads != c->n_heads) snprintf(kv, sizeof kv, " (%d kv)", c->n_kv_heads);
    snprintf(buf, n, "%s, %d layers, dim %d, %d heads%s, ffn %d, vocab %d, context %d, %s", model_family_name(c->family), c->n_layers,
             c->dim, c->n_heads, kv, c->ffn_dim, c->vocab_size, c->context, c->tied_embeddings ? "tied" : "untied");
}

/* 1 if dir already holds a model: saving replaces it (atomically), and the output says so. */
static int has_model(const char *dir) {
    char p[4096];
    snprintf(p, sizeof p, "%s/config.json", dir);
    int has = file_exists(p);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    return has | file_exists(p);
}

/* ---- rlhf model new ---- */

static const char *const new_usage =
    "rlhf model new --family gpt2|llama --layers L --dim D --heads H [--kv-heads K] [--ffn F] --vocab V --context T "
    "[--tied|--untied] --seed S --out DIR [--json]";
static const char *const new_help =
    "Creates a randomly initialised model directory (config.json + model.safetensors).\n"
    "\n"
    "  --family gpt2|llama  GPT-2 (learned positions, LayerNorm, GELU) or Llama (RoPE, RMSNorm, SwiGLU, GQA)\n"
    "  --layers L           transformer blocks\n"
    "  --dim D              model width (a multiple of --heads)\n"
    "  --heads H            attention heads\n"
    "  --kv-heads K         key/value heads, dividing H (llama only; default H)\n"
    "  --ffn F              MLP hidden size (default gpt2 4D; llama 2/3 of 4D rounded up to a multiple of 32)\n"
    "  --vocab V            vocabulary size\n"
    "  --context T          maximum sequence length\n"
    "  --tied, --untied     share the output head with the token embedding (default: gpt2 tied, llama untied)\n"
    "  --seed S             initialisation seed (default 1); the same seed gives the same weights\n"
    "  --out DIR            directory to write (created if missing); a model already there is replaced\n"
    "  --json               print the result as JSON";

static int model_new(int argc, char **argv) {
    static const struct option opts[] = {
        {"family", required_argument, 0, 'f'}, {"layers", required_argument, 0, 'L'}, {"dim", required_argument, 0, 'd'},
        {"heads", required_argument, 0, 'H'},  {"kv-heads", required_argument, 0, 'k'}, {"ffn", required_argument, 0, 'F'},
        {"vocab", required_argument, 0, 'V'},  {"context", required_argument, 0, 'T'}, {"tied", no_argument, 0, 't'},
        {"untied", no_argument, 0, 'u'},       {"seed", required_argument, 0, 's'},    {"out", required_argument, 0, 'o'},
        {"json", no_argument, 0, 'j'},         {0, 0, 0, 0},
    };
    const char *family = NULL, *out = NULL;
    int layers = 0, dim = 0, heads = 0, kv = 0, ffn = 0, vocab = 0, context = 0, tied = -1, json = 0, rc;
    long long seed = 1;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'f': family = optarg; break;
        case 'L': if ((rc = parse_int_flag(new_usage, "layers", optarg, 1, 1024, &layers))) return rc; break;
        case 'd': if ((rc = parse_int_flag(new_usage, "dim", optarg, 1, 65536, &dim))) return rc; break;
        case 'H': if ((rc = parse_int_flag(new_usage, "heads", optarg, 1, 65536, &heads))) return rc; break;
        case 'k': if ((rc = parse_int_flag(new_usage, "kv-heads", optarg, 1, 65536, &kv))) return rc; break;
        case 'F': if ((rc = parse_int_flag(new_usage, "ffn", optarg, 1, 1 << 20, &ffn))) return rc; break;
        case 'V': if ((rc = parse_int_flag(new_usage, "vocab", optarg, 1, 1 << 24, &vocab))) return rc; break;
        case 'T': if ((rc = parse_int_flag(new_usage, "context", optarg, 1, 1 << 20, &context))) return rc; break;
        case 't':
        case 'u':
            if (tied >= 0 && tied != (c == 't')) return usage_error(new_usage, "%s", "--tied and --untied exclude each other");
            tied = c == 't';
            break;
        case 's': {
            char *end;
            errno = 0;
            seed = strtoll(optarg, &end, 10);
            if (errno || end == optarg || *end || seed < 0) return usage_error(new_usage, "--seed: expected a non-negative integer, got '%s'", optarg);
            break;
        }
        case 'o': out = optarg; break;
        case 'j': json = 1; break;
        default: return getopt_error(new_usage, c, argv);
        }
    }
    if (optind < argc) return usage_error(new_usage, "unexpected argument '%s'", argv[optind]);
    model_config cfg;
    if (!family) return usage_error(new_usage, "%s is required", "--family");
    if (strcmp(family, "gpt2") == 0) model_config_defaults(&cfg, MODEL_FAMILY_GPT2);
    else if (strcmp(family, "llama") == 0) model_config_defaults(&cfg, MODEL_FAMILY_LLAMA);
    else return usage_error(new_usage, "--family: expected gpt2 or llama, got '%s'", family);
    const char *missing = !layers ? "--layers" : !dim ? "--dim" : !heads ? "--heads" : !vocab ? "--vocab" : !context ? "--context" : !out ? "--out" : NULL;
    if (missing) return usage_error(new_usage, "%s is required", missing);
    if (dim % heads) {
        out_error("--dim %d must be a multiple of --heads %d", dim, heads);
        return 2;
    }
    if (!kv) kv = heads;
    if (cfg.family == MODEL_FAMILY_GPT2 && kv != heads) {
        out_error("--kv-heads is for llama; gpt2 has as many key/value heads as heads");
        return 2;
    }
    if (heads % kv) {
        out_error("--kv-heads %d must divide --heads %d", kv, heads);
        return 2;
    }
    if (cfg.family == MODEL_FAMILY_LLAMA && (dim / heads) % 2) {
        out_error("llama head size --dim/--heads = %d must be even for rotary embeddings", dim / heads);
        return 2;
    }
    if (!ffn) ffn = cfg.family == MODEL_FAMILY_GPT2 ? 4 * dim : (8 * dim / 3 + 31) / 32 * 32;
    cfg.n_layers = layers;
    cfg.dim = dim;
    cfg.n_heads = heads;
    cfg.n_kv_heads = kv;
    cfg.ffn_dim = ffn;
    cfg.vocab_size = vocab;
    cfg.context = context;
    if (tied >= 0) cfg.tied_embeddings = tied;
    const int replaced = has_model(out);

    rlhf_error err = {0};
    model m;
    if (model_init(&m, &cfg, &err)) {
        out_fail(&err);
        return err.code == RLHF_ERR_INVALID ? 2 : 1; /* a flag value the model refuses is a usage error */
    }
    rng_t rng;
    rng_seed(&rng, (uint64_t)seed);
    model_init_random(&m, &rng);
    rc = checkpoint_save(&m, out, &err);
    if (rc) {
        model_free(&m);
        return out_fail(&err);
    }
    char desc[256], count[32];
    describe(desc, sizeof desc, &cfg);
    fmt_count(count, sizeof count, m.n_params);
    if (json) {
        out_printf("{\"out\": ");
        out_json_string(out);
        out_printf(", \"family\": \"%s\", \"n_params\": %zu, \"seed\": %lld, \"replaced\": %s}\n", model_family_name(cfg.family),
                   m.n_params, seed, replaced ? "true" : "false");
    } else {
        out_printf("%s %s: %s; %s parameters (seed %lld)\n", replaced ? "replaced the model in" : "created", out, desc, count, seed);
    }
    model_free(&m);
    return 0;
}

/* ---- rlhf model convert ---- */

static const char *const convert_usage = "rlhf model convert --from llama2c|gguf FILE --out DIR [--json]";
static const char *const convert_help =
    "Converts a llama2.c checkpoint or a GGUF file into a Hugging Face model directory.\n"
    "\n"
    "  --from llama2c   llama2.c's run.c .bin (version 0 / legacy); its size must match its header,\n"
    "                   and a tokenizer.bin beside it with the same vocabulary is converted too\n"
    "  --from gguf      a llama- or gpt2-architecture GGUF file (F32, F16, BF16, Q8_0 tensors,\n"
    "                   dequantised to float32); its vocabulary and chat template come along\n"
    "  --out DIR        directory to write (created if missing): config.json, model.safetensors,\n"
    "                   tokenizer.json and tokenizer_config.json when the source has them; a model\n"
    "                   already there is replaced\n"
    "  --json           print the result as JSON\n"
    "\n"
    "llama2.c rotates adjacent dimension pairs and llama.cpp's converter permutes q/k rows for its\n"
    "interleaved RoPE; both are permuted back (as transformers' convert_llama_weights_to_hf does)\n"
    "so the result is a plain Hugging Face model with the half-split RoPE layout, computing\n"
    "exactly the same logits.";

static int model_convert(int argc, char **argv) {
    static const struct option opts[] = {
        {"from", required_argument, 0, 'f'}, {"out", required_argument, 0, 'o'}, {"json", no_argument, 0, 'j'},
        {0, 0, 0, 0},
    };
    const char *from = NULL, *out = NULL;
    int json = 0, c, rc;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'f': from = optarg; break;
        case 'o': out = optarg; break;
        case 'j': json = 1; break;
        default: return getopt_error(convert_usage, c, argv);
        }
    }
    if (!from) return usage_error(convert_usage, "%s is required", "--from");
    model_format want;
    if (strcmp(from, "llama2c") == 0) want = MODEL_FORMAT_LLAMA2C;
    else if (strcmp(from, "gguf") == 0) want = MODEL_FORMAT_GGUF;
    else return usage_error(convert_usage, "--from: expected llama2c or gguf, got '%s'", from);
    if (!out) return usage_error(convert_usage, "%s is required", "--out DIR");
    if (optind >= argc) return usage_error(convert_usage, "%s", "the file to convert is required");
    if (optind + 1 < argc) return usage_error(convert_usage, "unexpected argument '%s'", argv[optind + 1]);
    const char *in = argv[optind];
    const int replaced = has_model(out);
    rlhf_error err = {0};
    if (file_is_dir(in)) {
        out_error("%s is a directory, not a %s file", in, from);
        return 1;
    }
    model_bundle b;
    if (model_bundle_load(&b, in, &err)) return out_fail(&err);
    if (b.format != want) {
        out_error("%s is a %s file, not %s (use --from %s)", in, model_format_name(b.format), from, model_format_name(b.format));
        model_bundle_free(&b);
        return 1;
    }
    const model m = b.m;
    rc = model_bundle_save(&b, out, &err);
    if (rc) {
        model_bundle_free(&b);
        return out_fail(&err);
    }
    char desc[256], count[32];
    describe(desc, sizeof desc, &m.config);
    fmt_count(count, sizeof count, m.n_params);
    if (json) {
        out_printf("{\"from\": ");
        out_json_string(in);
        out_printf(", \"out\": ");
        out_json_string(out);
        out_printf(", \"n_params\": %zu, \"rope_layout\": \"half\", \"tokenizer\": %s, \"chat_template\": %s, "
                   "\"replaced\": %s}\n", m.n_params, b.tok ? "true" : "false", b.chat_template ? "true" : "false",
                   replaced ? "true" : "false");
    } else {
        out_printf("converted %s -> %s%s: %s; %s parameters%s%s%s\n", in, out, replaced ? " (replacing the model there)" : "",
                   desc, count, m.config.family == MODEL_FAMILY_LLAMA ? " (q/k permuted for half-split RoPE)" : "",
                   b.tok ? "; tokenizer" : "", b.chat_template ? "; chat template" : "");
    }
    model_bundle_free(&b);
    return 0;
}

/* ---- rlhf model merge ---- */

static const char *const merge_usage = "rlhf model merge --model BASE --adapter DIR --out DIR [--json]";
static const char *const merge_help =
    "Merges a LoRA adapter (a PEFT directory: adapter_config.json + adapter_model.safetensors,\n"
    "ours or PEFT's) into its base model and writes a plain model directory.\n"
    "\n"
    "  --model BASE   the base model (directory, llama2.c .bin or GGUF file)\n"
    "  --adapter DIR  the adapter directory; its ranks and shapes must fit BASE\n"
    "  --out DIR      directory to write (config.json, model.safetensors, tokenizer files of BASE)\n"
    "  --json         print the result as JSON\n"
    "\n"
    "Every target weight becomes W + (alpha / r) B A (transposed for GPT-2's Conv1D weights), so\n"
    "the result computes what BASE with the adapter computes, without the adapter. A reward model's or\n"
    "classifier's adapter (rlhf reward/classify train --lora-rank: classifier_config.json beside it)\n"
    "becomes a full classifier directory (config.json with id2label, score.weight from the adapter).";

/* {"model": ..., "adapter": ..., "out": ... — the caller adds its fields and the closing brace */
static void merge_json_head(const char *base, const char *adapter, const char *out) {
    out_printf("{\"model\": ");
    out_json_string(base);
    out_printf(", \"adapter\": ");
    out_json_string(adapter);
    out_printf(", \"out\": ");
    out_json_string(out);
}

static int model_merge(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"adapter", required_argument, 0, 'a'},
        {"out", required_argument, 0, 'o'},   {"json", no_argument, 0, 'j'},
        {0, 0, 0, 0},
    };
    const char *base = NULL, *adapter = NULL, *out = NULL;
    int json = 0, c;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'm': base = optarg; break;
        case 'a': adapter = optarg; break;
        case 'o': out = optarg; break;
        case 'j': json = 1; break;
        default: return getopt_error(merge_usage, c, argv);
        }
    }
    if (!base) return usage_error(merge_usage, "%s is required", "--model BASE");
    if (!adapter) return usage_error(merge_usage, "%s is required", "--adapter DIR");
    if (!out) return usage_error(merge_usage, "%s is required", "--out DIR");
    if (optind < argc) return usage_error(merge_usage, "unexpected argument '%s'", argv[optind]);
    rlhf_error err = {0};
    model_bundle b;
    char cls_path[4200];
    snprintf(cls_path, sizeof cls_path, "%s/%s", adapter, SCORE_CLASSIFIER_FILE);
    if (file_exists(cls_path)) {
        /* a classifier's adapter carries its trained score head and labels */
        if (score_model_load_adapter(&b, adapter, base, &err) || model_bundle_save(&b, out, &err)) {
            model_bundle_free(&b);
            return out_fail(&err);
        }
        if (json) {
            merge_json_head(base, adapter, out);
            out_printf(", \"num_labels\": %d}\n", b.m.config.num_labels);
        } else out_printf("merged %s (a classifier's adapter, %d labels) into %s -> %s\n", adapter, b.m.config.num_labels, base, out);
        model_bundle_free(&b);
        return 0;
    }
    if (model_bundle_load(&b, base, &err)) return out_fail(&err);
    lora lo;
    if (lora_load(&lo, &b.m, adapter, NULL, 0, NULL, &err) || lora_merge(&lo, &b.m, &err) ||
        model_bundle_save(&b, out, &err)) {
        lora_free(&lo);
        model_bundle_free(&b);
        return out_fail(&err);
    }
    if (json) {
        merge_json_head(base, adapter, out);
        out_printf(", \"rank\": %d, \"alpha\": %g, \"merged_modules\": %d}\n", lo.rank, (double)lo.alpha, lo.n_sites);
    } else {
        out_printf("merged %s (r %d, alpha %g, %d modules: %s) into %s -> %s\n", adapter, lo.rank, (double)lo.alpha,
                   lo.n_sites, lo.target_modules, base, out);
    }
    lora_free(&lo);
    model_bundle_free(&b);
    return 0;
}

/* ---- rlhf model info ---- */

static const char *const info_usage = "rlhf model info DIR|FILE.bin|FILE.gguf [--tensors] [--json]";
static const char *const info_help =
    "Shows a model's configuration, parameter count and memory needs (after loading and checking\n"
    "every tensor).\n"
    "\n"
    "  DIR|FILE.bin|FILE.gguf  a Hugging Face model directory, a llama2.c checkpoint or a GGUF file\n"
    "  --tensors     also list every tensor: name, shape, elements\n"
    "  --json        print one JSON object";

static const char *kind_name(model_tensor_kind k) {
    switch (k) {
    case MODEL_TENSOR_MATRIX: return "matrix";
    case MODEL_TENSOR_EMBEDDING: return "embedding";
    case MODEL_TENSOR_NORM: return "norm";
    case MODEL_TENSOR_BIAS: return "bias";
    }
    return "?";
}

static int model_info(int argc, char **argv) {
    static const struct option opts[] = {
        {"tensors", no_argument, 0, 't'}, {"json", no_argument, 0, 'j'}, {0, 0, 0, 0},
    };
    int tensors = 0, json = 0, c;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 't': tensors = 1; break;
        case 'j': json = 1; break;
        default: return getopt_error(info_usage, c, argv);
        }
    }
    if (optind >= argc) return usage_error(info_usage, "%s", "a model directory (or llama2.c / GGUF file) is required");
    if (optind + 1 < argc) return usage_error(info_usage, "unexpected argument '%s'", argv[optind + 1]);
    const char *path = argv[optind];
    rlhf_error err = {0};
    model m;
    if (model_load_weights(&m, path, &err)) return out_fail(&err);
    const model_config *cf = &m.config;
    /* what is allocated: the parameter buffer (with its alignment padding), the same again for
     * gradients, and twice more for AdamW's two moments */
    const double pb = (double)m.n_floats * sizeof(float);
    if (json) {
        out_printf("{\"path\": ");
        out_json_string(path);
        out_printf(", \"config\": {\"family\": \"%s\", \"n_layers\": %d, \"dim\": %d, \"n_heads\": %d, \"n_kv_heads\": %d, "
                   "\"ffn_dim\": %d, \"vocab_size\": %d, \"context\": %d, \"tied_embeddings\": %s, \"norm_eps\": ",
                   model_family_name(cf->family), cf->n_layers, cf->dim, cf->n_heads, cf->n_kv_heads, cf->ffn_dim, cf->vocab_size,
                   cf->context, cf->tied_embeddings ? "true" : "false");
        out_json_float(cf->norm_eps);
        if (cf->family == MODEL_FAMILY_LLAMA) {
            out_printf(", \"rope_theta\": ");
            out_json_float(cf->rope_theta);
            out_printf(", \"rope_layout\": \"%s\"", cf->rope_layout == MODEL_ROPE_INTERLEAVED ? "interleaved" : "half");
        }
        out_printf(", \"bos_id\": %d, \"eos_id\": %d}", (int)cf->bos_id, (int)cf->eos_id);
        out_printf(", \"n_params\": %zu, \"n_tensors\": %d, \"bytes\": {\"params\": %.0f, \"params_grads\": %.0f, "
                   "\"params_grads_adamw\": %.0f}",
                   m.n_params, m.n_tensors, pb, 2 * pb, 4 * pb);
        if (tensors) {
            out_printf(", \"tensors\": [");
            for (int i = 0; i < m.n_tensors; i++) {
                const model_tensor *t = &m.tensors[i];
                out_printf("%s{\"name\": ", i ? ", " : "");
                out_json_string(t->name);
                if (t->ndim == 2) out_printf(", \"shape\": [%lld, %lld]", (long long)t->shape[0], (long long)t->shape[1]);
                else out_printf(", \"shape\": [%lld]", (long long)t->shape[0]);
                out_printf(", \"numel\": %zu, \"kind\": \"%s\"}", t->numel, kind_name(t->kind));
            }
            out_printf("]");
        }
        out_printf("}\n");
    } else {
        char count[32], b1[32], b2[32], b4[32];
        fmt_count(count, sizeof count, m.n_params);
        fmt_bytes(b1, sizeof b1, pb);
        fmt_bytes(b2, sizeof b2, 2 * pb);
        fmt_bytes(b4, sizeof b4, 4 * pb);
        out_printf("model       %s\n", path);
        out_printf("family      %s (%s)\n", model_family_name(cf->family),
                   cf->family == MODEL_FAMILY_GPT2 ? "GPT2LMHeadModel" : "LlamaForCausalLM");
        out_printf("layers      %d\n", cf->n_layers);
        out_printf("dim         %d\n", cf->dim);
        out_printf("heads       %d (kv heads %d, head size %d)\n", cf->n_heads, cf->n_kv_heads, cf->dim / cf->n_heads);
        out_printf("ffn         %d\n", cf->ffn_dim);
        out_printf("vocab       %d\n", cf->vocab_size);
        out_printf("context     %d\n", cf->context);
        out_printf("embeddings  %s\n", cf->tied_embeddings ? "tied (output head = token embedding)" : "untied (separate lm_head)");
        out_printf("norm eps    %g\n", (double)cf->norm_eps);
        if (cf->family == MODEL_FAMILY_LLAMA) out_printf("rope        theta %g, %s\n", (double)cf->rope_theta, rope_name(cf->rope_layout));
        out_printf("bos / eos   %d / %d\n", (int)cf->bos_id, (int)cf->eos_id);
        out_printf("parameters  %s in %d tensors\n", count, m.n_tensors);
        out_printf("memory      %s params, %s with gradients, %s with gradients + AdamW\n", b1, b2, b4);
        if (tensors) {
            out_printf("\n%-52s %-14s %12s  %s\n", "tensor", "shape", "elements", "kind");
            for (int i = 0; i < m.n_tensors; i++) {
                const model_tensor *t = &m.tensors[i];
                char shape[48];
                if (t->ndim == 2) snprintf(shape, sizeof shape, "%lld x %lld", (long long)t->shape[0], (long long)t->shape[1]);
                else snprintf(shape, sizeof shape, "%lld", (long long)t->shape[0]);
                out_printf("%-52s %-14s %12zu  %s\n", t->name, shape, t->numel, kind_name(t->kind));
            }
        }
    }
    model_free(&m);
    return 0;
}

/* ---- rlhf model ---- */

typedef struct {
    const char *name;
    const char *const *usage;
    const char *const *help;
    command_fn fn;
} model_subcommand;

static const model_subcommand g_model_commands[] = {
    {"new", &new_usage, &new_help, model_new},
    {"convert", &convert_usage, &convert_help, model_convert},
    {"merge", &merge_usage, &merge_help, model_merge},
    {"info", &info_usage, &info_help, model_info},
};
#define N_MODEL_COMMANDS (sizeof g_model_commands / sizeof g_model_commands[0])

int cmd_model(int argc, char **argv) {
    const model_subcommand *sub = NULL;
    if (argc >= 2)
        for (size_t i = 0; i < N_MODEL_COMMANDS; i++)
            if (strcmp(argv[1], g_model_commands[i].name) == 0) sub = &g_model_commands[i];
    if (!sub) {
        if (argc >= 2 && strcmp(argv[1], "--help") != 0 && strcmp(argv[1], "-h") != 0) {
            out_error("unknown model subcommand '%s'", argv[1]);
        }
        int help = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0);
        for (size_t i = 0; i < N_MODEL_COMMANDS; i++) {
            if (help) out_printf("%s %s\n", i ? "      " : "usage:", *g_model_commands[i].usage);
            else out_error("%s %s", i ? "      " : "usage:", *g_model_commands[i].usage);
        }
        if (help) out_printf("\n'rlhf model SUBCOMMAND --help' documents each.\n");
        else out_error("run 'rlhf model SUBCOMMAND --help' for details");
        return help ? 0 : 2;
    }
    if (command_wants_help(argc - 1, argv + 1)) {
        out_printf("usage: %s\n\n%s\n", *sub->usage, *sub->help);
        return 0;
    }
    return sub->fn(argc - 1, argv + 1);
}

/* ---- rlhf loss / rlhf logits ---- */

static const char *const loss_usage = "rlhf loss --model DIR --tokens \"ID ID ...\" [--grads OUT.safetensors] [--json]";
static const char *const loss_help =
    "Mean next-token cross-entropy of one sequence: tokens 2..n predicted from their prefixes.\n"
    "\n"
    "  --model PATH      a model directory, a llama2.c .bin or a GGUF file\n"
    "  --tokens \"IDS\"    at least 2 token ids, separated by spaces or commas\n"
    "  --grads OUT       also write d(loss)/d(parameter) for every parameter, under the parameter's\n"
    "                    own tensor name, as a safetensors file (float32, written atomically)\n"
    "  --json            print {\"loss\", \"perplexity\", \"tokens\", \"predictions\"[, \"grads\"]}";

static const char *const logits_usage = "rlhf logits --model DIR|FILE.bin|FILE.gguf --tokens \"ID ...\" --json";
static const char *const logits_help =
    "The logits the model gives at every position of one sequence.\n"
    "\n"
    "  --model PATH      a model directory, a llama2.c .bin or a GGUF file\n"
    "  --tokens \"IDS\"    token ids, separated by spaces or commas\n"
    "  --json            print {\"tokens\": [...], \"vocab_size\": V, \"logits\": [[V floats] per position]};\n"
    "                    without it, the 5 most likely next tokens at each position";

/* Loads the model, checks all n_ids ids against its vocabulary and runs one forward over
 * ids[0..T). Returns an exit status; on 0, *m and *a are the caller's to free. */
static int load_and_forward(const char *path, const int32_t *ids, int n_ids, int T, model *m, model_acts *a) {
    rlhf_error err = {0};
    memset(a, 0, sizeof *a);
    if (model_load_weights(m, path, &err)) return out_fail(&err);
    if (!m->w.lm_head) {
        out_error("%s is a sequence classifier (score head, %d labels), not a language model: it has no logits (use "
                  "rlhf score)", path, m->config.num_labels);
        model_free(m);
        return 1;
    }
    /* every id, including a loss's last target (which the forward never sees) */
    for (int i = 0; i < n_ids; i++)
        if (ids[i] >= m->config.vocab_size) {
            out_error("--tokens: id %d at position %d is outside the model's vocabulary (%d tokens)", (int)ids[i], i,
                      m->config.vocab_size);
            model_free(m);
            return 2;
        }
    if (T > m->config.context) {
        out_error("%d positions exceed the model's context of %d", T, m->config.context);
        model_free(m);
        return 1;
    }
    if (model_acts_init(a, &m->config, 1, T, &err) || model_forward(m, a, ids, 1, T, &err)) {
        model_acts_free(a);
        model_free(m);
        return out_fail(&err);
    }
    return 0;
}

static int parse_model_tokens(int argc, char **argv, const char *usage, const char **model_path, const char **tokens,
                              const char **grads, int *json) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"tokens", required_argument, 0, 't'}, {"grads", required_argument, 0, 'g'},
        {"json", no_argument, 0, 'j'},        {0, 0, 0, 0},
    };
    int c;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'm': *model_path = optarg; break;
        case 't': *tokens = optarg; break;
        case 'g':
            if (!grads) return usage_error(usage, "unknown option '%s'", "--grads");
            *grads = optarg;
            break;
        case 'j': *json = 1; break;
        default: return getopt_error(usage, c, argv);
        }
    }
    if (optind < argc) return usage_error(usage, "unexpected argument '%s'", argv[optind]);
    if (!*model_path) return usage_error(usage, "%s is required", "--model");
    if (!*tokens) return usage_error(usage, "%s is required", "--tokens");
    return 0;
}

int cmd_loss(int argc, char **argv) {
    if (command_wants_help(argc, argv)) {
        out_printf("usage: %s\n\n%s\n", loss_usage, loss_help);
        return 0;
    }
    const char *path = NULL, *tokens = NULL, *grads = NULL;
    int json = 0, n = 0, rc;
    if ((rc = parse_model_tokens(argc, argv, loss_usage, &path, &tokens, &grads, &json))) return rc;
    int32_t *ids = NULL;
    if ((rc = parse_tokens(loss_usage, tokens, &ids, &n))) return rc;
    if (n < 2) {
        free(ids);
        return usage_error(loss_usage, "%s", "--tokens needs at least 2 ids (the loss predicts tokens 2..n)");
    }
    const int T = n - 1;
    model m;
    model_acts a;
    if ((rc = load_and_forward(path, ids, n, T, &m, &a))) {
        free(ids);
        return rc;
    }
    rlhf_error err = {0};
    const int V = m.config.vocab_size;
    /* targets are the inputs shifted by one; the head turns logits into dlogits in place */
    double loss = model_xent(a.logits, ids + 1, NULL, 1, T, V, grads ? a.logits : NULL, NULL);
    safetensors_entry *entries = NULL;
    if (grads) {
        rc = model_alloc_grads(&m, &err);
        if (!rc) {
            model_zero_grads(&m);
            rc = model_backward(&m, &a, a.logits, NULL, &err);
        }
        if (!rc && !(entries = calloc((size_t)m.n_tensors, sizeof *entries))) rc = rlhf_errorf(&err, RLHF_ERR_NOMEM, "out of memory");
        for (int i = 0; !rc && i < m.n_tensors; i++) {
            const model_tensor *t = &m.tensors[i];
            entries[i] = (safetensors_entry){.name = t->name, .dtype = SAFETENSORS_DTYPE_F32, .ndim = t->ndim,
                                             .shape = {t->shape[0], t->shape[1]}, .data = m.grads + t->offset};
        }
        if (!rc) rc = safetensors_write(grads, entries, m.n_tensors, &err);
    }
    if (!rc) {
        if (json) {
            out_printf("{\"loss\": ");
            out_json_float(loss);
            out_printf(", \"perplexity\": ");
            out_json_float(exp(loss));
            out_printf(", \"tokens\": %d, \"predictions\": %d", n, T);
            if (grads) {
                out_printf(", \"grads\": ");
                out_json_string(grads);
                out_printf(", \"grad_tensors\": %d", m.n_tensors);
            }
            out_printf("}\n");
        } else {
            out_printf("loss %.6f (perplexity %.3f) over %d predictions of %d tokens\n", loss, exp(loss), T, n);
            if (grads) out_printf("gradients of %d tensors written to %s\n", m.n_tensors, grads);
        }
    }
    free(entries);
    free(ids);
    model_acts_free(&a);
    model_free(&m);
    return rc ? out_fail(&err) : 0;
}

int cmd_logits(int argc, char **argv) {
    if (command_wants_help(argc, argv)) {
        out_printf("usage: %s\n\n%s\n", logits_usage, logits_help);
        return 0;
    }
    const char *path = NULL, *tokens = NULL;
    int json = 0, n = 0, rc;
    if ((rc = parse_model_tokens(argc, argv, logits_usage, &path, &tokens, NULL, &json))) return rc;
    int32_t *ids = NULL;
    if ((rc = parse_tokens(logits_usage, tokens, &ids, &n))) return rc;
    if (n < 1) {
        free(ids);
        return usage_error(logits_usage, "%s", "--tokens needs at least 1 id");
    }
    model m;
    model_acts a;
    if ((rc = load_and_forward(path, ids, n, n, &m, &a))) {
        free(ids);
        return rc;
    }
    const int V = m.config.vocab_size;
    if (json) {
        out_printf("{\"model\": ");
        out_json_string(path);
        out_printf(", \"tokens\": [");
        for (int t = 0; t < n; t++) out_printf(t ? ", %d" : "%d", (int)ids[t]);
        out_printf("], \"vocab_size\": %d, \"logits\": [", V);
        for (int t = 0; t < n; t++) {
            const float *row = a.logits + (size_t)t * V;
            out_printf(t ? ",\n[" : "\n[");
            for (int v = 0; v < V; v++) {
                if (v) out_printf(", ");
                out_json_float(row[v]);
            }
            out_printf("]");
        }
        out_printf("]}\n");
    } else {
        for (int t = 0; t < n; t++) {
            const float *row = a.logits + (size_t)t * V;
            int top[5], k = V < 5 ? V : 5;
            for (int j = 0; j < k; j++) {
                int best = -1;
                for (int v = 0; v < V; v++) {
                    int used = 0;
                    for (int q = 0; q < j; q++) used |= top[q] == v;
                    if (!used && (best < 0 || row[v] > row[best])) best = v;
                }
                top[j] = best;
            }
            out_printf("pos %d token %d ->", t, (int)ids[t]);
            for (int j = 0; j < k; j++) out_printf(" %d (%.4f)", top[j], (double)row[top[j]]);
            out_printf("\n");
        }
    }
    free(ids);
    model_acts_free(&a);
    model_free(&m);
    return 0;
}
