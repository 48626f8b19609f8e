/* cmd_world.c — `rlhf world`: the task world (src/world/world.h) as JSONL or text, and its
 * verifier on the command line.
 *
 *   rlhf world [--family NAME|all|stories] [--split train|val|test] [--n N] [--format sft|prompts|text]
 *              [--flaws none|default|WRONG,RAMBLING,RUDE,ENDLESS] [--seed S] [--out FILE]
 *   rlhf world verify --prompt TEXT --response TEXT [--json]
 *   rlhf world families
 *
 * --n counts instances per family. sft lines: {"prompt","completion","family"} plus "flaw" and,
 * for an endless completion, "eos": false (the SFT trainer then appends no EOS). prompts lines:
 * {"prompt","family"}. text: for pre-training, each instance as "User: PROMPT\nAssistant:
 * ANSWER\n\n" and, with --family stories or all, narrative paragraphs. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repl/commands.h"
#include "repl/out.h"
#include "src/core/fileio.h"
#include "src/core/rng.h"
#include "src/world/world.h"

static const char *k_usage =
    "rlhf world [--family NAME|all|stories] [--split train|val|test] [--n N] [--format sft|chat|prompts|text] "
    "[--flaws none|default|W,R,U,E] [--seed S] [--out FILE]\n"
    "       rlhf world verify --prompt TEXT --response TEXT [--json]\n"
    "       rlhf world families";

static int usage_error(const char *fmt, const char *what) {
    out_error(fmt, what);
    out_error("usage: %s", k_usage);
    return 2;
}

static int print_help(void) {
    out_printf("usage: %s\n\n", k_usage);
    out_printf("The project's own task world: instruction/response pairs in families whose answers a verifier\n"
               "checks, and narrative text. Instance i of a family and split is fixed (seeded); train, val and\n"
               "test share no prompt. --n counts instances per family (default 100).\n"
               "  --format sft      {\"prompt\",\"completion\",\"family\"} (+ \"flaw\", and \"eos\": false when endless)\n"
               "  --format chat     {\"messages\": [user, assistant],\"family\"} (+ \"flaw\"), for chat templates\n"
               "  --format prompts  {\"prompt\",\"family\"}\n"
               "  --format text     \"User: ...\\nAssistant: ...\" blocks (and stories) for pre-training\n"
               "  --flaws           sft only: none (default), default (wrong 20%%, rambling 10%%, rude 10%%,\n"
               "                    endless 10%%) or four rates W,R,U,E\n"
               "  --seed S          which instances are flawed (the instances themselves are fixed)\n"
               "verify prints whether a response to a world prompt is right, what it read, and its flaws.\n"
               "families:");
    for (int f = 0; f < world_family_count(); f++) out_printf(" %s", world_family_name(f));
    out_printf("\n");
    return 0;
}

static int cmd_world_verify(int argc, char **argv) {
    const char *prompt = NULL, *response = NULL;
    int json = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--prompt") == 0 && i + 1 < argc) prompt = argv[++i];
        else if (strcmp(argv[i], "--response") == 0 && i + 1 < argc) response = argv[++i];
        else if (strcmp(argv[i], "--json") == 0) json = 1;
        else return usage_error("world verify: unknown or incomplete argument %s", argv[i]);
    }
    if (!prompt || !response) return usage_error("world verify: %s", "--prompt and --response are required");
    world_verdict v;
    rlhf_error err = {0};
    if (world_verify(prompt, response, &v, &err)) return out_fail(&err);
    const char *family = world_family_name(world_prompt_family(prompt));
    char flaws[64] = "";
    const char *names[4] = {"wrong", "rambling", "rude", "endless"};
    for (int k = 0; k < 4; k++)
        if (v.flaws & (1u << k)) snprintf(flaws + strlen(flaws), sizeof flaws - strlen(flaws), "%s%s", flaws[0] ? "," : "", names[k]);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "family", family);
        cJSON_AddBoolToObject(o, "correct", v.correct);
        cJSON_AddStringToObject(o, "expected", v.expected);
        cJSON_AddStringToObject(o, "read", v.got);
        cJSON_AddStringToObject(o, "flaws", flaws);
        cJSON_AddNumberToObject(o, "reward", v.reward);
        char *s = cJSON_PrintUnformatted(o);
        if (s) out_printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
    } else {
        out_printf("%s: %s (expected \"%s\", read \"%s\")%s%s, reward %.2f\n", family, v.correct ? "correct" : "wrong",
                   v.expected, v.got, flaws[0] ? "; flaws: " : "", flaws, v.reward);
    }
    return 0;
}

typedef enum { FMT_SFT, FMT_PROMPTS, FMT_TEXT, FMT_CHAT } out_format;

static int parse_flaws(const char *s, world_flaws *f) {
    if (strcmp(s, "none") == 0) {
        memset(f, 0, sizeof *f);
        return 0;
    }
    if (strcmp(s, "default") == 0) {
        world_flaws_defaults(f);
        return 0;
    }
    char *end;
    double v[4];
    const char *p = s;
    for (int k = 0; k < 4; k++) {
        errno = 0;
        v[k] = strtod(p, &end);
        if (end == p || errno || v[k] < 0 || v[k] > 1) return -1;
        p = end;
        if (k < 3 && *p++ != ',') return -1;
    }
    if (*p || v[0] + v[1] + v[2] + v[3] >= 1) return -1;
    *f = (world_flaws){v[0], v[1], v[2], v[3]};
    return 0;
}

/* Appends one instance to the output buffer in the chosen format. */
static int emit_item(FILE *fp, out_format fmt, const world_item *it, const world_flaws *fl, rng_t *r, uint64_t seed) {
    if (fmt == FMT_TEXT) return fprintf(fp, "User: %s\nAssistant: %s\n\n", it->prompt, it->answer) < 0;
    cJSON *o = cJSON_CreateObject();
    if (fmt != FMT_CHAT) cJSON_AddStringToObject(o, "prompt", it->prompt);
    if (fmt == FMT_SFT || fmt == FMT_CHAT) {
        double u = rng_float(r);
        unsigned flaw = 0;
        const double edges[4] = {fl->wrong, fl->wrong + fl->rambling, fl->wrong + fl->rambling + fl->rude,
                                 fl->wrong + fl->rambling + fl->rude + fl->endless};
        for (int k = 0; k < 4 && !flaw; k++)
            if (u < edges[k]) flaw = 1u << k;
        char text[4 * WORLD_TEXT_MAX];
        if (flaw) world_flawed_answer(it, flaw, seed, text, sizeof text);
        else snprintf(text, sizeof text, "%s", it->answer);
        if (fmt == FMT_CHAT) { /* {"messages": [user, assistant]}: rendered with the chat template by SFT */
            cJSON *msgs = cJSON_AddArrayToObject(o, "messages");
            cJSON *u = cJSON_CreateObject(), *a = cJSON_CreateObject();
            cJSON_AddStringToObject(u, "role", "user");
            cJSON_AddStringToObject(u, "content", it->prompt);
            cJSON_AddStringToObject(a, "role", "assistant");
            cJSON_AddStringToObject(a, "content", text);
            cJSON_AddItemToArray(msgs, u);
            cJSON_AddItemToArray(msgs, a);
        } else {
            cJSON_AddStringToObject(o, "completion", text);
        }
        cJSON_AddStringToObject(o, "family", world_family_name(it->family));
        if (flaw) {
            static const char *const names[4] = {"wrong", "rambling", "rude", "endless"};
            int k = 0;
            while (!(flaw & (1u << k))) k++;
            cJSON_AddStringToObject(o, "flaw", names[k]);
            if (flaw == WORLD_FLAW_ENDLESS) cJSON_AddFalseToObject(o, "eos");
        }
    } else {
        cJSON_AddStringToObject(o, "family", world_family_name(it->family));
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    int bad = !s || fprintf(fp, "%s\n", s) < 0;
    free(s);
    return bad;
}

int cmd_world(int argc, char **argv) {
    if (command_wants_help(argc, argv)) return print_help();
    if (argc >= 2 && strcmp(argv[1], "verify") == 0) return cmd_world_verify(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "families") == 0) {
        for (int f = 0; f < world_family_count(); f++) {
            const char *const *labels = world_family_labels(f);
            out_printf("%-13s %s\n", world_family_name(f), labels ? "classification" : "exact answer");
        }
        return 0;
    }
    const char *family = "all", *split_name = "train", *format = "sft", *flaws_s = "none", *out_path = NULL;
    long n = 100;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v || strncmp(a, "--", 2) != 0) return usage_error("world: unknown or incomplete argument %s", a);
        i++;
        char *end;
        if (strcmp(a, "--family") == 0) family = v;
        else if (strcmp(a, "--split") == 0) split_name = v;
        else if (strcmp(a, "--format") == 0) format = v;
        else if (strcmp(a, "--flaws") == 0) flaws_s = v;
        else if (strcmp(a, "--out") == 0) out_path = v;
        else if (strcmp(a, "--n") == 0) {
            n = strtol(v, &end, 10);
            if (*end || n < 1 || n > 10000000) return usage_error("world: --n must be a count in 1..10000000, got %s", v);
        } else if (strcmp(a, "--seed") == 0) {
            seed = strtoull(v, &end, 10);
            if (*end || !*v) return usage_error("world: --seed must be a non-negative integer, got %s", v);
        } else return usage_error("world: unknown argument %s", a);
    }
    rlhf_error err = {0};
    world_split split;
    if (world_split_parse(split_name, &split, &err)) return usage_error("world: %s", err.msg);
    out_format fmt = strcmp(format, "sft") == 0 ? FMT_SFT : strcmp(format, "prompts") == 0 ? FMT_PROMPTS
                     : strcmp(format, "text") == 0 ? FMT_TEXT : strcmp(format, "chat") == 0 ? FMT_CHAT : (out_format)-1;
    if ((int)fmt < 0) return usage_error("world: --format must be sft, chat, prompts or text, got %s", format);
    world_flaws fl;
    if (parse_flaws(flaws_s, &fl)) return usage_error("world: --flaws must be none, default or four rates W,R,U,E summing below 1, got %s", flaws_s);
    if (fmt != FMT_SFT && fmt != FMT_CHAT && strcmp(flaws_s, "none") != 0)
        return usage_error("world: %s", "--flaws applies to --format sft and chat only");
    int stories = strcmp(family, "stories") == 0 || (strcmp(family, "all") == 0 && fmt == FMT_TEXT);
    int only = -1;
    if (strcmp(family, "all") != 0 && strcmp(family, "stories") != 0) {
        only = world_family_find(family);
        if (only < 0) return usage_error("world: unknown family %s (rlhf world families lists them)", family);
    }
    if (strcmp(family, "stories") == 0 && fmt != FMT_TEXT) return usage_error("world: %s", "stories come as --format text");
    /* the whole output is built in memory and written atomically (a file) or at once (stdout) */
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    if (!fp) return out_error("world: out of memory"), 1;
    rng_t r;
    rng_seed(&r, seed);
    int bad = 0;
    for (long i = 0; i < n && !bad; i++) {
        for (int f = 0; f < world_family_count() && !bad && strcmp(family, "stories") != 0; f++) {
            if (only >= 0 && f != only) continue;
            world_item it;
            if (world_item_make(f, split, (uint64_t)i, &it, &err)) {
                fclose(fp);
                free(buf);
                return out_fail(&err);
            }
            bad = emit_item(fp, fmt, &it, &fl, &r, seed * 1000003u + (uint64_t)i);
        }
        if (stories) {
            char story[2048];
            /* stories of a split are seeded apart from the other splits' */
            world_story((uint64_t)i * 3 + (uint64_t)split, story, sizeof story);
            bad = fprintf(fp, "%s\n\n", story) < 0;
        }
    }
    if (fclose(fp) != 0 || bad) {
        free(buf);
        out_error("world: out of memory");
        return 1;
    }
    int rc = 0;
    if (out_path) {
        if (file_write_atomic(out_path, buf, len, &err)) rc = out_fail(&err);
    } else {
        fwrite(buf, 1, len, out_stream());
    }
    free(buf);
    return rc;
}
