/* sft_data.c — SFT examples: JSONL reading, encoding with the loss mask (prompt/completion
 * boundary, assistant spans by rendering prefixes, EOS, truncation), and the loop's data source
 * (seeded split, per-epoch permutations, padded micro-batches). See sft.h. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/fileio.h"
#include "src/core/rng.h"
#include "src/gen/prompt.h"
#include "src/train/sft.h"

int sft_truncate_parse(const char *name) {
    if (strcmp(name, "keep_start") == 0) return SFT_TRUNCATE_KEEP_START;
    if (strcmp(name, "keep_end") == 0) return SFT_TRUNCATE_KEEP_END;
    if (strcmp(name, "error") == 0) return SFT_TRUNCATE_ERROR;
    return -1;
}

const char *sft_truncate_name(sft_truncate t) {
    switch (t) {
    case SFT_TRUNCATE_KEEP_START: return "keep_start";
    case SFT_TRUNCATE_KEEP_END: return "keep_end";
    case SFT_TRUNCATE_ERROR: return "error";
    }
    return "?";
}

/* ---- texts ---- */

static char *dup_str(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void sft_texts_free(sft_texts *d) {
    for (size_t i = 0; i < d->n; i++) {
        free(d->items[i].prompt);
        free(d->items[i].completion);
        free(d->items[i].messages_json);
    }
    free(d->items);
    memset(d, 0, sizeof *d);
}

/* Appends an item; takes ownership of the three strings (also on error). */
static int texts_push(sft_texts *d, char *prompt, char *completion, char *messages, int n_context, long line,
                      int64_t id, rlhf_error *err) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 64;
        sft_text *p = realloc(d->items, cap * sizeof *p);
        if (!p) {
            free(prompt);
            free(completion);
            free(messages);
            return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory reading SFT examples");
        }
        d->items = p;
        d->cap = cap;
    }
    d->items[d->n++] = (sft_text){prompt, completion, messages, line, id, n_context, 0};
    return RLHF_OK;
}

/* Checks a messages array; returns NULL when fine, else the reason. */
static const char *check_messages(const cJSON *msgs, char *buf, size_t size) {
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) return "\"messages\" must be a non-empty array";
    static const char *roles[] = {"system", "user", "assistant", "tool"};
    int i = 0, assistant = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content)) {
            snprintf(buf, size, "messages[%d] needs \"role\" and \"content\" strings", i);
            return buf;
        }
        int known = 0;
        for (int k = 0; k < 4; k++) known |= strcmp(role->valuestring, roles[k]) == 0;
        if (!known) {
            snprintf(buf, size, "messages[%d] has role \"%.40s\" (expected system, user, assistant or tool)", i,
                     role->valuestring);
            return buf;
        }
        assistant |= strcmp(role->valuestring, "assistant") == 0;
        i++;
    }
    if (!assistant) return "\"messages\" has no assistant turn (nothing to learn)";
    return NULL;
}

int sft_texts_read_jsonl(sft_texts *d, const char *path, rlhf_error *err) {
    memset(d, 0, sizeof *d);
    char *text = NULL;
    size_t len = 0;
    int rc = file_read_all(path, &text, &len, err);
    if (rc) return rc;
    long line = 0;
    char *p = text, *end = text + len;
    char why[160];
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *stop = nl ? nl : end;
        line++;
        *stop = '\0';
        char *s = p;
        p = nl ? nl + 1 : end;
        while (*s == ' ' || *s == '\t' || *s == '\r') s++;
        if (!*s) continue;
        if (memchr(s, '\0', (size_t)(stop - s)) != NULL) {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s:%ld: the line holds a NUL byte", path, line);
            goto fail;
        }
        cJSON *o = cJSON_Parse(s);
        if (!o || !cJSON_IsObject(o)) {
            cJSON_Delete(o);
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s:%ld: not a JSON object", path, line);
            goto fail;
        }
        const cJSON *eos = cJSON_GetObjectItemCaseSensitive(o, "eos");
        if (eos && !cJSON_IsBool(eos)) {
            cJSON_Delete(o);
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s:%ld: \"eos\" must be true or false", path, line);
            goto fail;
        }
        const int no_eos = cJSON_IsFalse(eos);
        const size_t before = d->n;
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
        const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(o, "prompt");
        const cJSON *completion = cJSON_GetObjectItemCaseSensitive(o, "completion");
        if (msgs) {
            const char *bad = check_messages(msgs, why, sizeof why);
            if (bad) {
                cJSON_Delete(o);
                rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s:%ld: %s", path, line, bad);
                goto fail;
            }
            char *mj = cJSON_PrintUnformatted(msgs);
            cJSON_Delete(o);
            if (!mj) goto nomem;
            rc = texts_push(d, NULL, NULL, mj, 0, line, 0, err);
        } else if (cJSON_IsArray(prompt) && cJSON_IsArray(completion)) {
            /* Conversational prompt/completion: one conversation, only the completion trained. */
            cJSON *all = cJSON_Duplicate(prompt, 1), *tail = cJSON_Duplicate(completion, 1);
            const int n_context = cJSON_GetArraySize(prompt);
            const char *bad = NULL;
            int has_reply = 0;
            const cJSON *it;
            cJSON_ArrayForEach(it, completion) {
                has_reply |= cJSON_IsString(cJSON_GetObjectItemCaseSensitive(it, "role")) &&
                             strcmp(cJSON_GetObjectItemCaseSensitive(it, "role")->valuestring, "assistant") == 0;
            }
            if (all && tail) {
                cJSON *x;
                while ((x = cJSON_DetachItemFromArray(tail, 0)) != NULL) cJSON_AddItemToArray(all, x);
                bad = !has_reply ? "\"completion\" has no assistant turn (nothing to learn)"
                                 : check_messages(all, why, sizeof why);
            }
            char *mj = all && tail && !bad ? cJSON_PrintUnformatted(all) : NULL;
            cJSON_Delete(all);
            cJSON_Delete(tail);
            cJSON_Delete(o);
            if (bad) {
                rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s:%ld: %s", path, line, bad);
                goto fail;
            }
            if (!mj) goto nomem;
            rc = texts_push(d, NULL, NULL, mj, n_context, line, 0, err);
        } else if (cJSON_IsString(prompt) && cJSON_IsString(completion)) {
            if (!*completion->valuestring) {
                cJSON_Delete(o);
                rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s:%ld: \"completion\" is empty", path, line);
                goto fail;
            }
            char *pp = dup_str(prompt->valuestring), *cc = dup_str(completion->valuestring);
            cJSON_Delete(o);
            if (!pp || !cc) {
                free(pp);
                free(cc);
                goto nomem;
            }
            rc = texts_push(d, pp, cc, NULL, 0, line, 0, err);
        } else {
            const char *what = !prompt && !completion ? "needs \"prompt\" and \"completion\" strings or a \"messages\" array"
                               : cJSON_IsArray(prompt) != cJSON_IsArray(completion)
                                   ? "\"prompt\" and \"completion\" must both be strings or both message lists"
                               : !cJSON_IsString(prompt)  ? "\"prompt\" is missing or not a string"
                                                          : "\"completion\" is missing or not a string";
            cJSON_Delete(o);
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s:%ld: %s", path, line, what);
            goto fail;
        }
        if (rc) goto fail;
        if (d->n > before) d->items[d->n - 1].no_eos = no_eos;
    }
    free(text);
    return RLHF_OK;
nomem:
    rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "%s:%ld: out of memory", path, line);
fail:
    free(text);
    sft_texts_free(d);
    return rc;
}

int sft_texts_from_dataset(sft_texts *d, const sft_dataset *src, rlhf_error *err) {
    memset(d, 0, sizeof *d);
    for (size_t i = 0; i < src->n; i++) {
        const sft_example *x = &src->examples[i];
        int rc;
        if (x->prompt_messages) {
            /* The stored chat prompt plus the reply as the assistant's turn. */
            cJSON *msgs = cJSON_Parse(x->prompt_messages);
            cJSON *m = cJSON_CreateObject();
            if (!cJSON_IsArray(msgs) || !m) {
                cJSON_Delete(msgs);
                cJSON_Delete(m);
                sft_texts_free(d);
                return rlhf_errorf(err, RLHF_ERR_FORMAT, "stored example %lld: prompt messages are not a JSON array",
                                   (long long)x->id);
            }
            const int n_context = cJSON_GetArraySize(msgs);
            cJSON_AddStringToObject(m, "role", "assistant");
            cJSON_AddStringToObject(m, "content", x->completion ? x->completion : "");
            cJSON_AddItemToArray(msgs, m);
            char *mj = cJSON_PrintUnformatted(msgs);
            cJSON_Delete(msgs);
            rc = mj ? texts_push(d, NULL, NULL, mj, n_context, 0, x->id, err)
                    : rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        } else {
            char *pp = dup_str(x->prompt ? x->prompt : ""), *cc = dup_str(x->completion ? x->completion : "");
            rc = pp && cc ? texts_push(d, pp, cc, NULL, 0, 0, x->id, err)
                          : (free(pp), free(cc), rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory"));
        }
        if (rc) {
            sft_texts_free(d);
            return rc;
        }
    }
    return RLHF_OK;
}

/* ---- encoding ---- */

void sft_encoded_free(sft_encoded *e) {
    free(e->ids);
    free(e->loss);
    free(e->start);
    free(e->len);
    free(e->line);
    memset(e, 0, sizeof *e);
}

static size_t common_prefix(const tok_ids *a, const tok_ids *b) {
    size_t n = a->n < b->n ? a->n : b->n, i = 0;
    while (i < n && a->ids[i] == b->ids[i]) i++;
    return i;
}

/* Scratch of one encoding pass (reused across examples: no allocation per example once grown). */
typedef struct {
    tok_ids full, part;
    uint8_t *mask;
    size_t mask_cap;
} enc_scratch;

static int mask_reserve(enc_scratch *s, size_t n) {
    if (n <= s->mask_cap) return 0;
    size_t cap = n * 2;
    uint8_t *m = realloc(s->mask, cap);
    if (!m) return -1;
    s->mask = m;
    s->mask_cap = cap;
    return 0;
}

/* Example label for messages: "FILE:LINE" or "example N". */
static void where(char *buf, size_t size, const char *source, const sft_text *t, size_t i) {
    if (t->line > 0) snprintf(buf, size, "%s:%ld", source, t->line);
    else if (t->id > 0) snprintf(buf, size, "%s: example %zu (row %lld)", source, i + 1, (long long)t->id);
    else snprintf(buf, size, "%s: example %zu", source, i + 1);
}

static int encode_pc(enc_scratch *s, const sft_text *t, const sft_encoder *enc, const char *at, rlhf_error *err) {
    unsigned flags = enc->add_bos && tok_bos_id(enc->tok) >= 0 ? TOK_ENCODE_ADD_BOS : 0;
    size_t lp = strlen(t->prompt), lc = strlen(t->completion);
    char *joined = malloc(lp + lc + 1);
    if (!joined) return rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", at);
    memcpy(joined, t->prompt, lp);
    memcpy(joined + lp, t->completion, lc + 1);
    int rc = tok_encode(enc->tok, t->prompt, lp, flags, &s->part, err);
    if (!rc) rc = tok_encode(enc->tok, joined, lp + lc, flags, &s->full, err);
    free(joined);
    if (rc) return rlhf_error_prefix(err, "%s: ", at);
    size_t b = common_prefix(&s->part, &s->full);
    if (mask_reserve(s, s->full.n + 1)) return rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", at);
    for (size_t j = 0; j < s->full.n; j++) s->mask[j] = j >= b;
    return RLHF_OK;
}

static int render(char **out, const sft_encoder *enc, const jinja_message *m, int n, int gen, const char *at,
                  rlhf_error *err) {
    int rc = prompt_chat_render(out, enc->chat_template, m, n, gen, enc->bos_token, enc->eos_token, err);
    return rc ? rlhf_error_prefix(err, "%s: chat template: ", at) : RLHF_OK;
}

static int encode_text(const sft_encoder *enc, const char *text, tok_ids *out, const char *at, rlhf_error *err) {
    /* A template writes its own BOS text; the template-less format gets the tokenizer's. */
    unsigned flags = TOK_ENCODE_ALLOW_SPECIAL;
    if (!enc->chat_template && enc->add_bos && tok_bos_id(enc->tok) >= 0) flags |= TOK_ENCODE_ADD_BOS;
    int rc = tok_encode(enc->tok, text, strlen(text), flags, out, err);
    return rc ? rlhf_error_prefix(err, "%s: ", at) : RLHF_OK;
}

/* Some templates write the generation prompt whatever add_generation_prompt says (the original
 * Llama 3 template): then "the conversation through a reply" ends with a generation prompt the
 * model must not learn to write after its own reply. Detected once: rendering a user turn gives
 * the same text with and without the flag; the prompt itself is what an empty conversation
 * renders. *suffix is that text (owned) or NULL for a template that honours the flag. */
static void ignored_generation_prompt(const sft_encoder *enc, char **suffix) {
    *suffix = NULL;
    if (!enc->chat_template) return;
    jinja_message u = {"user", "x"};
    char *a = NULL, *b = NULL, *g = NULL;
    if (prompt_chat_render(&a, enc->chat_template, &u, 1, 0, enc->bos_token, enc->eos_token, NULL) == 0 &&
        prompt_chat_render(&b, enc->chat_template, &u, 1, 1, enc->bos_token, enc->eos_token, NULL) == 0 &&
        strcmp(a, b) == 0 &&
        prompt_chat_render(&g, enc->chat_template, &u, 0, 0, enc->bos_token, enc->eos_token, NULL) == 0 && *g) {
        size_t la = strlen(a), lg = strlen(g);
        if (la >= lg && strcmp(a + la - lg, g) == 0) {
            *suffix = g;
            g = NULL;
        }
    }
    free(a);
    free(b);
    free(g);
}

static void strip_suffix(char *text, const char *suffix) {
    if (!suffix) return;
    size_t lt = strlen(text), ls = strlen(suffix);
    if (lt >= ls && strcmp(text + lt - ls, suffix) == 0) text[lt - ls] = '\0';
}

static int encode_messages(enc_scratch *s, const sft_text *t, const sft_encoder *enc, const char *gen_suffix,
                           const char *at, int *last_is_assistant, rlhf_error *err) {
    cJSON *arr = cJSON_Parse(t->messages_json);
    int n = cJSON_GetArraySize(arr);
    jinja_message *m = n > 0 ? calloc((size_t)n, sizeof *m) : NULL;
    char *text = NULL;
    int rc = RLHF_OK;
    if (!arr || !m) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", at);
        goto done;
    }
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        m[i].role = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "role"));
        m[i].content = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "content"));
        if (!m[i].role || !m[i].content) {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: messages[%d] needs role and content strings", at, i);
            goto done;
        }
        i++;
    }
    *last_is_assistant = strcmp(m[n - 1].role, "assistant") == 0;
    const int endless = t->no_eos && *last_is_assistant;
    if ((rc = render(&text, enc, m, n, 0, at, err))) goto done;
    strip_suffix(text, gen_suffix);
    if (endless) { /* the text stops right after the reply: no end-of-turn marker to learn */
        const char *c = m[n - 1].content, *hit = NULL;
        for (const char *p = text; *c && (p = strstr(p, c)) != NULL; p++) hit = p;
        if (!hit) {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: \"eos\": false needs a non-empty last reply that the chat "
                                                   "template writes as it is", at);
            goto done;
        }
        text[hit - text + strlen(c)] = '\0';
    }
    if ((rc = encode_text(enc, text, &s->full, at, err))) goto done;
    free(text);
    text = NULL;
    if (mask_reserve(s, s->full.n + 1)) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", at);
        goto done;
    }
    memset(s->mask, 0, s->full.n);
    for (int k = t->n_context; k < n; k++) {
        if (strcmp(m[k].role, "assistant") != 0) continue;
        /* Where the reply starts: the conversation before it, with the generation prompt. */
        if ((rc = render(&text, enc, m, k, 1, at, err))) goto done;
        if ((rc = encode_text(enc, text, &s->part, at, err))) goto done;
        free(text);
        text = NULL;
        size_t b = common_prefix(&s->part, &s->full);
        /* Where it stops: the conversation through it (without a generation prompt the
         * template wrote anyway). */
        if ((rc = render(&text, enc, m, k + 1, 0, at, err))) goto done;
        strip_suffix(text, gen_suffix);
        if ((rc = encode_text(enc, text, &s->part, at, err))) goto done;
        free(text);
        text = NULL;
        size_t e = endless && k == n - 1 ? s->full.n : common_prefix(&s->part, &s->full);
        for (size_t j = b; j < e; j++) s->mask[j] = 1;
    }
done:
    free(text);
    free(m);
    cJSON_Delete(arr);
    return rc;
}

static int push_example(sft_encoded *e, const int32_t *ids, const uint8_t *mask, int n, long line) {
    if (e->n == e->cap) {
        size_t cap = e->cap ? 2 * e->cap : 64;
        size_t *st = realloc(e->start, cap * sizeof *st);
        if (!st) return -1;
        e->start = st;
        int *ln = realloc(e->len, cap * sizeof *ln);
        if (!ln) return -1;
        e->len = ln;
        long *li = realloc(e->line, cap * sizeof *li);
        if (!li) return -1;
        e->line = li;
        e->cap = cap;
    }
    if (e->n_ids + (size_t)n > e->cap_ids) {
        size_t cap = (e->n_ids + (size_t)n) * 2;
        int32_t *ii = realloc(e->ids, cap * sizeof *ii);
        if (!ii) return -1;
        e->ids = ii;
        uint8_t *ll = realloc(e->loss, cap);
        if (!ll) return -1;
        e->loss = ll;
        e->cap_ids = cap;
    }
    memcpy(e->ids + e->n_ids, ids, (size_t)n * sizeof *ids);
    memcpy(e->loss + e->n_ids, mask, (size_t)n);
    e->start[e->n] = e->n_ids;
    e->len[e->n] = n;
    e->line[e->n] = line;
    e->n++;
    e->n_ids += (size_t)n;
    return 0;
}

int sft_encode(sft_encoded *out, const sft_texts *in, const sft_encoder *enc, const char *source, rlhf_error *err) {
    memset(out, 0, sizeof *out);
    enc_scratch s = {0};
    int rc = RLHF_OK;
    char at[512];
    if (enc->max_length < 2) return rlhf_errorf(err, RLHF_ERR_INVALID, "max length %d must be >= 2", enc->max_length);
    if (enc->eos_id < 0 || enc->eos_id >= tok_vocab_size(enc->tok))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "the tokenizer has no EOS token (SFT appends one and trains on it)");
    out->max_length = enc->max_length;
    char *gen_suffix = NULL;
    for (size_t i = 0; i < in->n && !gen_suffix; i++)
        if (in->items[i].messages_json) {
            ignored_generation_prompt(enc, &gen_suffix);
            break;
        }
    for (size_t i = 0; i < in->n; i++) {
        const sft_text *t = &in->items[i];
        where(at, sizeof at, source, t, i);
        int last_assistant = 1;
        rc = t->messages_json ? encode_messages(&s, t, enc, gen_suffix, at, &last_assistant, err) : encode_pc(&s, t, enc, at, err);
        if (rc) goto done;
        /* EOS appended (and trained on when the model speaks last), unless the example is
         * endless ("eos": false). */
        const int ends_with_eos = s.full.n > 0 && s.full.ids[s.full.n - 1] == enc->eos_id;
        if (!t->no_eos && !ends_with_eos) {
            if (mask_reserve(&s, s.full.n + 2)) {
                rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", at);
                goto done;
            }
            if (s.full.n + 1 > s.full.cap) {
                size_t cap = (s.full.n + 1) * 2;
                int32_t *p = realloc(s.full.ids, cap * sizeof *p);
                if (!p) {
                    rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", at);
                    goto done;
                }
                s.full.ids = p;
                s.full.cap = cap;
            }
            s.full.ids[s.full.n] = enc->eos_id;
            s.mask[s.full.n] = (uint8_t)last_assistant;
            s.full.n++;
            out->n_eos_added++;
        } else if (!t->no_eos && last_assistant) {
            s.mask[s.full.n - 1] = 1;
        }
        out->n_input++;
        size_t n = s.full.n, first = 0;
        if ((int)n > out->longest) out->longest = (int)n;
        if (n > (size_t)enc->max_length) {
            if (enc->truncate == SFT_TRUNCATE_ERROR) {
                rc = rlhf_errorf(err, RLHF_ERR_INVALID,
                                 "%s: the example is %zu tokens, longer than the maximum of %d (the model's context "
                                 "or --max-length); shorten it or pass --truncate keep_start|keep_end",
                                 at, n, enc->max_length);
                goto done;
            }
            if (enc->truncate == SFT_TRUNCATE_KEEP_END) first = n - (size_t)enc->max_length;
            n = (size_t)enc->max_length;
            out->n_truncated++;
        }
        /* The first kept id has nothing before it to be predicted from. */
        s.mask[first] = 0;
        size_t loss = 0;
        for (size_t j = first; j < first + n; j++) loss += s.mask[j];
        if (loss == 0) {
            out->n_dropped++;
            continue;
        }
        out->n_loss_tokens += loss;
        if (push_example(out, s.full.ids + first, s.mask + first, (int)n, t->line)) {
            rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory encoding %s", source);
            goto done;
        }
    }
done:
    free(gen_suffix);
    tok_ids_free(&s.full);
    tok_ids_free(&s.part);
    free(s.mask);
    if (rc) sft_encoded_free(out);
    return rc;
}

uint64_t sft_encoded_hash(const sft_encoded *e) {
    uint64_t h = train_hash(e->ids, e->n_ids * sizeof *e->ids);
    h ^= train_hash(e->loss, e->n_ids) * 0x9e3779b97f4a7c15ull;
    h ^= train_hash(e->len, e->n * sizeof *e->len) * 0xc2b2ae3d27d4eb4full;
    return h;
}

/* ---- the data source ---- */

static void shuffle(size_t *a, size_t n, uint64_t seed) {
    rng_t r;
    rng_seed(&r, seed);
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rng_below(&r, i);
        size_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

void sft_source_free(sft_source *s) {
    free(s->train);
    free(s->val);
    free(s->perm);
    free(s->rows);
    memset(s, 0, sizeof *s);
}

int sft_source_init(sft_source *s, const sft_encoded *e, double val_fraction, uint64_t seed, int B, int accum,
                    int32_t pad_id, rlhf_error *err) {
    memset(s, 0, sizeof *s);
    size_t n = e->n;
    if (n == 0) return rlhf_errorf(err, RLHF_ERR_INVALID, "no examples to train on");
    size_t n_val = (size_t)floor(val_fraction * (double)n);
    if (val_fraction > 0 && n_val == 0 && n >= 2) n_val = 1;
    if (n_val >= n) n_val = n - 1;
    size_t *all = malloc(n * sizeof *all);
    s->train = malloc((n - n_val) * sizeof *s->train);
    s->val = n_val ? malloc(n_val * sizeof *s->val) : NULL;
    s->perm = malloc((n - n_val) * sizeof *s->perm);
    s->rows = malloc((size_t)B * sizeof *s->rows);
    if (!all || !s->train || (n_val && !s->val) || !s->perm || !s->rows) {
        free(all);
        sft_source_free(s);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory splitting %zu examples", n);
    }
    for (size_t i = 0; i < n; i++) all[i] = i;
    /* The split is a function of the seed only (a different stream from the epochs'). */
    shuffle(all, n, seed ^ 0x5f17u);
    s->n_train = n - n_val;
    s->n_val = n_val;
    memcpy(s->train, all, s->n_train * sizeof *all);
    if (n_val) memcpy(s->val, all + s->n_train, n_val * sizeof *all);
    free(all);
    s->e = e;
    s->seed = seed;
    s->B = B;
    s->accum = accum;
    s->pad_id = pad_id;
    s->perm_epoch = -1;
    return RLHF_OK;
}

/* Writes examples idx[0..rows) into b, padded to the longest (n-1 positions each). */
static void fill_rows(const sft_source *s, const size_t *idx, int rows, train_batch *b) {
    const sft_encoded *e = s->e;
    int T = 1;
    for (int r = 0; r < rows; r++)
        if (e->len[idx[r]] - 1 > T) T = e->len[idx[r]] - 1;
    b->B = rows;
    b->T = T;
    for (int r = 0; r < rows; r++) {
        const int32_t *ids = e->ids + e->start[idx[r]];
        const uint8_t *loss = e->loss + e->start[idx[r]];
        const int n = e->len[idx[r]] - 1;
        int32_t *tk = b->tokens + (size_t)r * T, *tg = b->targets + (size_t)r * T;
        for (int t = 0; t < n; t++) {
            tk[t] = ids[t];
            tg[t] = loss[t + 1] ? ids[t + 1] : -1;
        }
        for (int t = n; t < T; t++) {
            tk[t] = s->pad_id;
            tg[t] = -1;
        }
        b->lengths[r] = n;
        b->labels[r] = 0;
    }
}

static int source_fill(void *ctx, long step, int micro, rng_t *rng, train_batch *b, rlhf_error *err) {
    (void)rng;
    (void)err;
    sft_source *s = ctx;
    size_t *rows = s->rows;
    const int B = b->B < s->B ? b->B : s->B;
    /* A continuous stream of examples: global index g lies in epoch g / n_train, whose order is a
     * permutation seeded by (seed, epoch) — a pure function of the step, so resume replays it. */
    for (int r = 0; r < B; r++) {
        size_t g = ((size_t)step * (size_t)s->accum + (size_t)micro) * (size_t)B + (size_t)r;
        long epoch = (long)(g / s->n_train);
        if (epoch != s->perm_epoch) {
            memcpy(s->perm, s->train, s->n_train * sizeof *s->perm);
            shuffle(s->perm, s->n_train, s->seed + 0x9e3779b97f4a7c15ull * (uint64_t)(epoch + 1));
            s->perm_epoch = epoch;
        }
        rows[r] = s->perm[g % s->n_train];
    }
    fill_rows(s, rows, B, b);
    return RLHF_OK;
}

static int source_fill_val(void *ctx, int i, train_batch *b, rlhf_error *err) {
    (void)err;
    sft_source *s = ctx;
    size_t first = (size_t)i * (size_t)b->B;
    size_t rows = s->n_val - first < (size_t)b->B ? s->n_val - first : (size_t)b->B;
    fill_rows(s, s->val + first, (int)rows, b);
    return RLHF_OK;
}

train_data sft_source_data(sft_source *s) {
    train_data d;
    memset(&d, 0, sizeof d);
    d.fill = source_fill;
    d.fill_val = source_fill_val;
    d.n_val = s->n_val ? (int)((s->n_val + (size_t)s->B - 1) / (size_t)s->B) : 0;
    d.ctx = s;
    return d;
}
