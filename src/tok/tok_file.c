/* tok_file.c — reading and writing tokenizer files.
 *
 * Readers build the parallel arrays tok_set_vocab takes (piece, text and flags per id), then the
 * merge table: Hugging Face and GPT-2 files list merges in rank order; llama2.c's tokenizer.bin
 * has scores instead, so every token that is the concatenation of two tokens gets that pair as a
 * merge ranked by its score (equal scores share a rank, and the leftmost pair wins, as in
 * llama2.c's encoder). The writer emits Hugging Face's tokenizer.json for either family. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/fileio.h"
#include "src/tok/tok_internal.h"
#include "src/core/utf8.h"

#define MARKER "\xE2\x96\x81" /* U+2581 "▁", SentencePiece's space marker */
#define MAX_IDS (1 << 24)     /* a sanity bound on ids read from files */

/* "dir/name" in a new string the caller frees; NULL if out of memory. */
static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

/* The directory part of path ("." when there is none) in a new string; NULL if out of memory. */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

/* ---- a temporary piece -> id table used while reading merges ---- */

typedef struct {
    int32_t *slots;
    size_t cap;
} piece_index;

static int piece_index_build(piece_index *ix, const tokenizer *t) {
    ix->cap = 16;
    while (ix->cap < (size_t)t->n_ids * 2 + 1) ix->cap <<= 1;
    ix->slots = malloc(ix->cap * sizeof *ix->slots);
    if (!ix->slots) return RLHF_ERR_NOMEM;
    memset(ix->slots, 0xFF, ix->cap * sizeof *ix->slots);
    for (int32_t id = 0; id < t->n_ids; id++) {
        if (!(t->flags[id] & TOK_ID_PRESENT)) continue;
        const char *p = t->piece_blob + t->piece_off[id];
        size_t i = tok_hash_bytes(p, strlen(p)) & (ix->cap - 1);
        int dup = 0;
        while (ix->slots[i] >= 0) {
            if (strcmp(t->piece_blob + t->piece_off[ix->slots[i]], p) == 0) dup = 1;
            i = (i + 1) & (ix->cap - 1);
        }
        if (!dup) ix->slots[i] = id;
    }
    return RLHF_OK;
}

static int32_t piece_index_find(const piece_index *ix, const tokenizer *t, const char *s, size_t len) {
    size_t i = tok_hash_bytes(s, len) & (ix->cap - 1);
    for (;;) {
        int32_t id = ix->slots[i];
        if (id < 0) return -1;
        const char *p = t->piece_blob + t->piece_off[id];
        if (strncmp(p, s, len) == 0 && p[len] == '\0') return id;
        i = (i + 1) & (ix->cap - 1);
    }
}

/* Adds the merge left+right of rank `rank`; the result must be in the vocabulary. */
static int add_merge(tokenizer *t, const piece_index *ix, const char *left, size_t left_len, const char *right,
                     size_t right_len, int32_t rank, char **scratch, size_t *scratch_cap, const char *where,
                     rlhf_error *err) {
    int32_t a = piece_index_find(ix, t, left, left_len), b = piece_index_find(ix, t, right, right_len);
    if (a < 0 || b < 0)
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: merge %d ('%.*s' '%.*s') names a token not in the vocabulary",
                           where, (int)rank + 1, (int)left_len, left, (int)right_len, right);
    if (left_len + right_len + 1 > *scratch_cap) {
        size_t c = (left_len + right_len + 1) * 2;
        char *p = realloc(*scratch, c);
        if (!p) return rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", where);
        *scratch = p;
        *scratch_cap = c;
    }
    memcpy(*scratch, left, left_len);
    memcpy(*scratch + left_len, right, right_len);
    int32_t r = piece_index_find(ix, t, *scratch, left_len + right_len);
    if (r < 0)
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: merge %d ('%.*s' '%.*s') makes a token not in the vocabulary",
                           where, (int)rank + 1, (int)left_len, left, (int)right_len, right);
    if (tok_pair_map_add(&t->merges, a, b, rank, r) != RLHF_OK) return rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", where);
    return RLHF_OK;
}

/* ---- building texts from pieces ---- */

/* A vocabulary being read: parallel arrays by id. Texts are built into `text_store`. */
typedef struct {
    int32_t n_ids;
    const char **pieces;
    uint32_t *piece_lens;
    const char **texts;
    uint32_t *text_lens;
    uint8_t *flags;
    char *text_store;
    size_t text_used, text_cap;
    char **owned; /* strings this struct allocated (pieces made for llama2.c specials) */
    int n_owned;
} vocab_build;

static int vb_init(vocab_build *vb, int32_t n_ids) {
    memset(vb, 0, sizeof *vb);
    vb->n_ids = n_ids;
    vb->pieces = calloc((size_t)n_ids + 1, sizeof *vb->pieces);
    vb->piece_lens = calloc((size_t)n_ids + 1, sizeof *vb->piece_lens);
    vb->texts = calloc((size_t)n_ids + 1, sizeof *vb->texts);
    vb->text_lens = calloc((size_t)n_ids + 1, sizeof *vb->text_lens);
    vb->flags = calloc((size_t)n_ids + 1, 1);
    return vb->pieces && vb->piece_lens && vb->texts && vb->text_lens && vb->flags ? RLHF_OK : RLHF_ERR_NOMEM;
}

static void vb_free(vocab_build *vb) {
    free(vb->pieces);
    free(vb->piece_lens);
    free(vb->texts);
    free(vb->text_lens);
    free(vb->flags);
    free(vb->text_store);
    for (int i = 0; i < vb->n_owned; i++) free(vb->owned[i]);
    free(vb->owned);
    memset(vb, 0, sizeof *vb);
}

/* Texts are stored as offsets while the store may move, then turned into pointers. */
static int vb_text_reserve(vocab_build *vb, size_t more) {
    /* allocated even for zero bytes: callers form store + used before appending */
    if (vb->text_store && vb->text_used + more <= vb->text_cap) return RLHF_OK;
    size_t c = vb->text_cap ? vb->text_cap : 1 << 16;
    while (c < vb->text_used + more) c *= 2;
    char *p = realloc(vb->text_store, c);
    if (!p) return RLHF_ERR_NOMEM;
    vb->text_store = p;
    vb->text_cap = c;
    return RLHF_OK;
}

/* Text of a byte-level piece: each character stands for one byte through GPT-2's table;
 * characters outside the table (never in real vocabularies) are kept as they are. */
static int text_byte_level(vocab_build *vb, const char *piece, size_t len, size_t *off, size_t *out_len) {
    if (vb_text_reserve(vb, len) != RLHF_OK) return RLHF_ERR_NOMEM;
    *off = vb->text_used;
    char *o = vb->text_store + vb->text_used;
    size_t m = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = utf8_decode((const unsigned char *)piece + i, len - i, &cp);
        int b = k > 0 ? tok_char_to_byte(cp) : -1;
        if (b >= 0) {
            o[m++] = (char)b;
            i += (size_t)k;
        } else {
            size_t l = k > 0 ? (size_t)k : 1;
            memcpy(o + m, piece + i, l);
            m += l;
            i += l;
        }
    }
    vb->text_used += m;
    *out_len = m;
    return RLHF_OK;
}

/* Text of a SentencePiece piece: the marker becomes a space. */
static int text_sentencepiece(vocab_build *vb, const char *piece, size_t len, size_t *off, size_t *out_len) {
    if (vb_text_reserve(vb, len) != RLHF_OK) return RLHF_ERR_NOMEM;
    *off = vb->text_used;
    char *o = vb->text_store + vb->text_used;
    size_t m = 0;
    for (size_t i = 0; i < len;) {
        if (i + 3 <= len && memcmp(piece + i, MARKER, 3) == 0) {
            o[m++] = ' ';
            i += 3;
        } else {
            o[m++] = piece[i++];
        }
    }
    vb->text_used += m;
    *out_len = m;
    return RLHF_OK;
}

static int hex_digit(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* The byte of a "<0xNN>" piece, -1 for any other piece. */
static int byte_piece_value(const char *p, size_t len) {
    if (len != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return -1;
    int hi = hex_digit((unsigned char)p[3]), lo = hex_digit((unsigned char)p[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* Fills texts for every id from its piece (added tokens: the piece itself), then hands the
 * arrays to the tokenizer. */
static int vb_commit(vocab_build *vb, tokenizer *t, rlhf_error *err) {
    size_t *offs = malloc(((size_t)vb->n_ids + 1) * sizeof *offs);
    if (!offs) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    int rc = RLHF_OK;
    for (int32_t i = 0; i < vb->n_ids && rc == RLHF_OK; i++) {
        if (!vb->pieces[i]) continue;
        size_t off = 0, len = 0;
        const char *p = vb->pieces[i];
        size_t pl = vb->piece_lens[i];
        int byte;
        if (vb->flags[i] & TOK_ID_ADDED) {
            if (vb_text_reserve(vb, pl) != RLHF_OK) rc = RLHF_ERR_NOMEM;
            else {
                off = vb->text_used;
                memcpy(vb->text_store + off, p, pl);
                vb->text_used += pl;
                len = pl;
            }
        } else if (t->model == TOK_MODEL_BYTE_LEVEL) {
            rc = text_byte_level(vb, p, pl, &off, &len);
        } else if ((vb->flags[i] & TOK_ID_BYTE) && (byte = byte_piece_value(p, pl)) >= 0) {
            if (vb_text_reserve(vb, 1) != RLHF_OK) rc = RLHF_ERR_NOMEM;
            else {
                off = vb->text_used;
                vb->text_store[vb->text_used++] = (char)byte;
                len = 1;
            }
        } else if (t->sp_marker_space) {
            if (vb_text_reserve(vb, pl) != RLHF_OK) rc = RLHF_ERR_NOMEM;
            else {
                off = vb->text_used;
                memcpy(vb->text_store + off, p, pl);
                vb->text_used += pl;
                len = pl;
            }
        } else {
            rc = text_sentencepiece(vb, p, pl, &off, &len);
        }
        offs[i] = off;
        vb->text_lens[i] = (uint32_t)len;
    }
    if (rc == RLHF_OK) {
        for (int32_t i = 0; i < vb->n_ids; i++)
            if (vb->pieces[i]) vb->texts[i] = vb->text_store + offs[i];
        rc = tok_set_vocab(t, vb->n_ids, vb->pieces, vb->piece_lens, vb->texts, vb->text_lens, vb->flags, err);
    } else {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory building the vocabulary");
    }
    free(offs);
    return rc;
}

/* ---- JSON helpers ---- */

static cJSON *parse_json(const char *path, const char *text, size_t len, rlhf_error *err) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t pos = end && end >= text ? (size_t)(end - text) : 0, line = 1;
        for (size_t i = 0; i < pos && i < len; i++) line += text[i] == '\n';
        rlhf_errorf(err, RLHF_ERR_FORMAT, "%s:%zu: malformed JSON", path, line);
    }
    return root;
}

static const cJSON *jget(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }
static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = jget(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
static int jbool(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = jget(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}
static int jtype_is(const cJSON *o, const char *type) {
    const char *s = jstr(o, "type");
    return s && strcmp(s, type) == 0;
}

/* ---- tokenizer.json ---- */

typedef struct {
    int byte_level;    /* a ByteLevel pre-tokenizer or decoder */
    int gpt2_split;    /* ByteLevel with use_regex */
    const char *regex; /* a Split pattern */
    int n_splits;
    int add_prefix_space;
    int metaspace, metaspace_split, metaspace_prefix, metaspace_first;
    int prepend, replace_space;
    int strip_space;
} hf_options;

static int read_pre_tokenizer(const cJSON *p, hf_options *o, const char *path, rlhf_error *err) {
    if (!p || cJSON_IsNull(p)) return RLHF_OK;
    const char *type = jstr(p, "type");
    if (!type) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: pre_tokenizer without a type", path);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *item;
        cJSON_ArrayForEach(item, jget(p, "pretokenizers")) {
            int rc = read_pre_tokenizer(item, o, path, err);
            if (rc) return rc;
        }
        return RLHF_OK;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        o->byte_level = 1;
        o->add_prefix_space = jbool(p, "add_prefix_space", 0);
        if (jbool(p, "use_regex", 1)) {
            o->gpt2_split = 1;
            o->n_splits++;
        }
        return RLHF_OK;
    }
    if (strcmp(type, "Split") == 0) {
        const cJSON *pat = jget(p, "pattern");
        const char *re = jstr(pat, "Regex"), *behavior = jstr(p, "behavior");
        if (!re) return rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: Split pre-tokenizer without a Regex pattern is not supported", path);
        if (!behavior || strcmp(behavior, "Isolated") != 0 || jbool(p, "invert", 0))
            return rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: Split pre-tokenizer behaviour '%s' is not supported (only Isolated)",
                               path, behavior ? behavior : "?");
        o->regex = re;
        o->n_splits++;
        return RLHF_OK;
    }
    if (strcmp(type, "Metaspace") == 0) {
        const char *rep = jstr(p, "replacement"), *scheme = jstr(p, "prepend_scheme");
        if (rep && strcmp(rep, MARKER) != 0)
            return rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: Metaspace replacement '%s' is not supported", path, rep);
        o->metaspace = 1;
        o->metaspace_split = jbool(p, "split", 1);
        o->metaspace_prefix = scheme ? strcmp(scheme, "never") != 0 : jbool(p, "add_prefix_space", 1);
        o->metaspace_first = scheme && strcmp(scheme, "first") == 0;
        return RLHF_OK;
    }
    return rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: pre-tokenizer type '%s' is not supported", path, type);
}

static int read_normalizer(const cJSON *p, hf_options *o, const char *path, rlhf_error *err) {
    if (!p || cJSON_IsNull(p)) return RLHF_OK;
    const char *type = jstr(p, "type");
    if (!type) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: normalizer without a type", path);
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *item;
        cJSON_ArrayForEach(item, jget(p, "normalizers")) {
            int rc = read_normalizer(item, o, path, err);
            if (rc) return rc;
        }
        return RLHF_OK;
    }
    if (strcmp(type, "Prepend") == 0) {
        const char *s = jstr(p, "prepend");
        if (!s || strcmp(s, MARKER) != 0)
            return rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: Prepend normalizer other than \"" MARKER "\" is not supported", path);
        o->prepend = 1;
        return RLHF_OK;
    }
    if (strcmp(type, "Replace") == 0) {
        const char *from = jstr(jget(p, "pattern"), "String"), *to = jstr(p, "content");
        if (!from || !to || strcmp(from, " ") != 0 || strcmp(to, MARKER) != 0)
            return rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: Replace normalizer other than ' ' -> \"" MARKER "\" is not supported", path);
        o->replace_space = 1;
        return RLHF_OK;
    }
    return rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: normalizer type '%s' is not supported", path, type);
}

/* Decoders only tell whether the dummy-prefix space is dropped; decoding itself is fixed by the
 * family (byte table, or marker + byte fallback), which is what every such file spells out. */
static void read_decoder(const cJSON *p, hf_options *o) {
    if (!p || cJSON_IsNull(p)) return;
    if (jtype_is(p, "Sequence")) {
        const cJSON *item;
        cJSON_ArrayForEach(item, jget(p, "decoders")) read_decoder(item, o);
        return;
    }
    if (jtype_is(p, "ByteLevel")) o->byte_level = 1;
    if (jtype_is(p, "Strip")) {
        const char *c = jstr(p, "content");
        const cJSON *start = jget(p, "start");
        if (c && strcmp(c, " ") == 0 && cJSON_IsNumber(start) && start->valuedouble >= 1) o->strip_space = 1;
    }
    if (jtype_is(p, "Metaspace")) {
        const char *scheme = jstr(p, "prepend_scheme");
        o->strip_space = scheme ? strcmp(scheme, "never") != 0 : jbool(p, "add_prefix_space", 1);
    }
}

static int json_id(const cJSON *v, int32_t *id) {
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble >= MAX_IDS || v->valuedouble != (double)(int32_t)v->valuedouble)
        return 0;
    *id = (int32_t)v->valuedouble;
    return 1;
}

static int load_hf_json(tokenizer *t, const char *path, const cJSON *root, rlhf_error *err) {
    vocab_build vb = {0};
    piece_index ix = {0};
    char *scratch = NULL;
    size_t scratch_cap = 0;
    int rc;
    const cJSON *model = jget(root, "model");
    const cJSON *vocab = jget(model, "vocab"), *merges = jget(model, "merges"), *added = jget(root, "added_tokens");
    const char *mtype = jstr(model, "type");
    if (!cJSON_IsObject(model)) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: no \"model\" object", path);
    if (mtype && strcmp(mtype, "BPE") != 0)
        return rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: model type '%s' is not supported (only BPE)", path, mtype);
    if (!cJSON_IsObject(vocab)) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: model has no \"vocab\" object", path);
    if (merges && !cJSON_IsArray(merges)) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: model \"merges\" is not an array", path);
    if (jstr(model, "continuing_subword_prefix") || jstr(model, "end_of_word_suffix"))
        return rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: BPE with subword prefixes/suffixes is not supported", path);

    hf_options o = {0};
    if ((rc = read_pre_tokenizer(jget(root, "pre_tokenizer"), &o, path, err))) return rc;
    if ((rc = read_normalizer(jget(root, "normalizer"), &o, path, err))) return rc;
    read_decoder(jget(root, "decoder"), &o);
    if (o.n_splits > 1)
        return rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: more than one splitting pre-tokenizer is not supported", path);
    if (o.byte_level) {
        t->model = TOK_MODEL_BYTE_LEVEL;
        t->add_prefix_space = o.add_prefix_space;
        if (o.regex && strcmp(o.regex, PRETOKENIZER_GPT2_PATTERN) != 0) {
            t->split = TOK_SPLIT_REGEX;
            t->regex_pattern = strdup(o.regex);
            if (!t->regex_pattern) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
            if ((rc = pretokenizer_regex_compile(&t->regex, o.regex, err))) return rlhf_error_prefix(err, "%s: ", path);
        } else {
            t->split = o.regex || o.gpt2_split ? TOK_SPLIT_GPT2 : TOK_SPLIT_NONE;
        }
    } else {
        if (o.regex) return rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: a Split regex without ByteLevel is not supported", path);
        t->model = TOK_MODEL_SENTENCEPIECE;
        t->split = o.metaspace && o.metaspace_split ? TOK_SPLIT_SPACE : TOK_SPLIT_NONE;
        t->sp_add_prefix = o.prepend || (o.metaspace && o.metaspace_prefix);
        t->sp_prefix_first = o.metaspace && o.metaspace_first;
        t->sp_marker_input = o.replace_space || o.metaspace;
        t->sp_strip_space = o.strip_space;
        t->sp_byte_fallback = jbool(model, "byte_fallback", 0);
        t->fuse_unk = jbool(model, "fuse_unk", 0);
    }
    t->ignore_merges = jbool(model, "ignore_merges", 0);

    int32_t max_id = -1, id;
    const cJSON *item;
    cJSON_ArrayForEach(item, vocab) {
        if (!json_id(item, &id)) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: vocab entry '%s' has a bad id", path, item->string);
        if (id > max_id) max_id = id;
    }
    cJSON_ArrayForEach(item, added) {
        if (!json_id(jget(item, "id"), &id) || !jstr(item, "content"))
            return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: an added_tokens entry lacks an id or content", path);
        if (id > max_id) max_id = id;
    }
    if (max_id < 0) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: empty vocabulary", path);
    /* Per-id tables are sized by the largest id: ids far beyond the number of entries would make
     * a small file cost seconds and hundreds of MB (real vocabularies are nearly dense). */
    const long n_entries = (long)cJSON_GetArraySize(vocab) + (long)cJSON_GetArraySize(added);
    if ((long)max_id >= 4 * n_entries + 65536)
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: token id %d is far beyond the vocabulary's %ld entries (ids must be "
                           "nearly dense)", path, (int)max_id, n_entries);
    if (vb_init(&vb, max_id + 1) != RLHF_OK) goto nomem;
    cJSON_ArrayForEach(item, vocab) {
        json_id(item, &id);
        vb.pieces[id] = item->string;
        vb.piece_lens[id] = (uint32_t)strlen(item->string);
        if (t->model == TOK_MODEL_SENTENCEPIECE && t->sp_byte_fallback && byte_piece_value(item->string, vb.piece_lens[id]) >= 0)
            vb.flags[id] |= TOK_ID_BYTE;
    }
    cJSON_ArrayForEach(item, added) {
        json_id(jget(item, "id"), &id);
        const char *content = jstr(item, "content");
        vb.pieces[id] = content;
        vb.piece_lens[id] = (uint32_t)strlen(content);
        vb.flags[id] = (uint8_t)(TOK_ID_ADDED | (jbool(item, "special", 0) ? TOK_ID_SPECIAL : 0));
    }
    if ((rc = vb_commit(&vb, t, err))) goto fail;
    const char *unk = jstr(model, "unk_token");
    if (unk) t->unk = tok_special_id(t, unk);
    if ((rc = tok_finish(t, err))) goto fail;
    if (unk && t->unk < 0) {
        if (piece_index_build(&ix, t) != RLHF_OK) goto nomem;
        t->unk = piece_index_find(&ix, t, unk, strlen(unk));
    }

    int n_merges = merges ? cJSON_GetArraySize(merges) : 0;
    if (tok_pair_map_init(&t->merges, (size_t)n_merges) != RLHF_OK) goto nomem;
    if (n_merges && !ix.slots && piece_index_build(&ix, t) != RLHF_OK) goto nomem;
    int32_t rank = 0;
    cJSON_ArrayForEach(item, merges) {
        const char *left, *right;
        size_t left_len, right_len;
        if (cJSON_IsString(item)) {
            /* "a b": pieces never contain a space in the files that use this form */
            const char *s = item->valuestring, *sp = strchr(s, ' ');
            if (!sp || strchr(sp + 1, ' '))
            {
                rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: merge %d '%s' is not two tokens", path, (int)rank + 1, s);
                goto fail;
            }
            left = s;
            left_len = (size_t)(sp - s);
            right = sp + 1;
            right_len = strlen(right);
        } else if (cJSON_IsArray(item) && cJSON_GetArraySize(item) == 2 && cJSON_IsString(item->child) &&
                   cJSON_IsString(item->child->next)) {
            left = item->child->valuestring;
            left_len = strlen(left);
            right = item->child->next->valuestring;
            right_len = strlen(right);
        } else {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: merge %d is neither \"a b\" nor [\"a\", \"b\"]", path, (int)rank + 1);
            goto fail;
        }
        if ((rc = add_merge(t, &ix, left, left_len, right, right_len, rank, &scratch, &scratch_cap, path, err))) goto fail;
        rank++;
    }
    vb_free(&vb);
    free(ix.slots);
    free(scratch);
    return RLHF_OK;
nomem:
    rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", path);
fail:
    vb_free(&vb);
    free(ix.slots);
    free(scratch);
    return rc;
}

/* BOS/EOS/PAD named in tokenizer_config.json beside the tokenizer, as a string or {"content"}. */
static void apply_config_specials(tokenizer *t, const char *text, size_t len);

static void read_config_specials(tokenizer *t, const char *dir) {
    char *path = path_join(dir, "tokenizer_config.json");
    char *text = NULL;
    size_t len;
    int ok = path && file_exists(path) && file_read_all(path, &text, &len, NULL) == RLHF_OK;
    free(path);
    if (!ok) return;
    apply_config_specials(t, text, len);
    free(text);
}

/* The BOS/EOS/PAD names of a tokenizer_config.json text, looked up among the special tokens. */
static void apply_config_specials(tokenizer *t, const char *text, size_t len) {
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) return; /* the tokenizer itself is fine; its names were guessed already */
    static const char *const keys[] = {"bos_token", "eos_token", "pad_token"};
    int32_t *slots[] = {&t->bos, &t->eos, &t->pad};
    for (int k = 0; k < 3; k++) {
        const cJSON *v = jget(root, keys[k]);
        const char *name = cJSON_IsString(v) ? v->valuestring : jstr(v, "content");
        if (name) {
            int32_t id = tok_special_id(t, name);
            if (id >= 0) *slots[k] = id;
        }
    }
    cJSON_Delete(root);
}

/* ---- encoder.json + vocab.bpe (GPT-2 as OpenAI shipped it) ---- */

static int load_gpt2(tokenizer *t, const char *encoder_path, const cJSON *encoder, const char *bpe_path, rlhf_error *err) {
    vocab_build vb = {0};
    piece_index ix = {0};
    char *bpe = NULL, *scratch = NULL, *where = NULL;
    size_t bpe_len, scratch_cap = 0;
    int rc;
    t->model = TOK_MODEL_BYTE_LEVEL;
    t->split = TOK_SPLIT_GPT2;
    /* OpenAI's encoder (tiktoken) takes a pre-token that is a whole token as is */
    t->ignore_merges = 1;
    int32_t max_id = -1, id;
    const cJSON *item;
    cJSON_ArrayForEach(item, encoder) {
        if (!json_id(item, &id)) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: entry '%s' has a bad id", encoder_path, item->string);
        if (id > max_id) max_id = id;
    }
    if (max_id < 0) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: empty vocabulary", encoder_path);
    if ((long)max_id >= 4L * cJSON_GetArraySize(encoder) + 65536) /* as for tokenizer.json */
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: token id %d is far beyond the vocabulary's %d entries (ids must be "
                           "nearly dense)", encoder_path, (int)max_id, cJSON_GetArraySize(encoder));
    if (vb_init(&vb, max_id + 1) != RLHF_OK) goto nomem;
    cJSON_ArrayForEach(item, encoder) {
        json_id(item, &id);
        vb.pieces[id] = item->string;
        vb.piece_lens[id] = (uint32_t)strlen(item->string);
        if (strcmp(item->string, "<|endoftext|>") == 0) vb.flags[id] = TOK_ID_ADDED | TOK_ID_SPECIAL;
    }
    if ((rc = vb_commit(&vb, t, err)) || (rc = tok_finish(t, err))) goto fail;
    if ((rc = file_read_all(bpe_path, &bpe, &bpe_len, err))) goto fail;
    if (piece_index_build(&ix, t) != RLHF_OK || tok_pair_map_init(&t->merges, 65536) != RLHF_OK) goto nomem;
    where = malloc(strlen(bpe_path) + 32);
    if (!where) goto nomem;
    int32_t rank = 0;
    size_t line_no = 0;
    for (char *line = bpe; line < bpe + bpe_len;) {
        char *nl = memchr(line, '\n', (size_t)(bpe + bpe_len - line));
        char *end = nl ? nl : bpe + bpe_len;
        line_no++;
        size_t len = (size_t)(end - line);
        if (len && line[len - 1] == '\r') len--;
        if (len > 0 && !(line_no == 1 && line[0] == '#')) {
            char *sp = memchr(line, ' ', len);
            if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - line))) {
                rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s:%zu: expected two tokens separated by one space", bpe_path, line_no);
                goto fail;
            }
            sprintf(where, "%s:%zu", bpe_path, line_no);
            if ((rc = add_merge(t, &ix, line, (size_t)(sp - line), sp + 1, len - (size_t)(sp + 1 - line), rank, &scratch,
                                &scratch_cap, where, err)))
                goto fail;
            rank++;
        }
        line = nl ? nl + 1 : bpe + bpe_len;
    }
    vb_free(&vb);
    free(ix.slots);
    free(bpe);
    free(scratch);
    free(where);
    return RLHF_OK;
nomem:
    rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", encoder_path);
fail:
    vb_free(&vb);
    free(ix.slots);
    free(bpe);
    free(scratch);
    free(where);
    return rc;
}

/* ---- llama2.c tokenizer.bin ---- */

static int score_cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x > y ? -1 : x < y;
}

static int load_llama2c(tokenizer *t, const char *path, const unsigned char *data, size_t len, rlhf_error *err) {
    vocab_build vb = {0};
    float *sorted = NULL;
    int32_t *rank_of = NULL;
    int rc;
    if (len < 4) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: too short for a llama2.c tokenizer", path);
    int32_t max_len;
    memcpy(&max_len, data, 4);
    if (max_len <= 0 || max_len > 65536) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: bad max_token_length %d", path, (int)max_len);
    /* first pass: count and check the records */
    int32_t n = 0;
    for (size_t off = 4; off < len; n++) {
        int32_t l;
        if (off + 8 > len) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: token %d: truncated record at byte %zu", path, (int)n, off);
        memcpy(&l, data + off + 4, 4);
        if (l < 0 || l > max_len || off + 8 + (size_t)l > len)
            return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: token %d: bad length %d at byte %zu", path, (int)n, (int)l, off);
        off += 8 + (size_t)l;
        if (n >= MAX_IDS) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: too many tokens", path);
    }
    if (n == 0) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: no tokens", path);
    t->model = TOK_MODEL_SENTENCEPIECE;
    t->split = TOK_SPLIT_NONE;
    t->sp_add_prefix = 1;
    t->sp_byte_fallback = 1;
    t->sp_strip_space = 1;
    t->sp_marker_space = 1;
    t->scores = malloc((size_t)n * sizeof *t->scores);
    if (vb_init(&vb, n) != RLHF_OK || !t->scores) goto nomem;
    size_t off = 4;
    for (int32_t i = 0; i < n; i++) {
        int32_t l;
        memcpy(&t->scores[i], data + off, 4);
        memcpy(&l, data + off + 4, 4);
        const char *p = (const char *)data + off + 8;
        off += 8 + (size_t)l;
        /* llama2.c's export writes BOS/EOS as "\n<s>\n" and "\n</s>\n": keep their plain names */
        const char *name = NULL;
        if (l == 5 && memcmp(p, "<unk>", 5) == 0) name = "<unk>";
        else if ((l == 5 && memcmp(p, "\n<s>\n", 5) == 0) || (l == 3 && memcmp(p, "<s>", 3) == 0)) name = "<s>";
        else if ((l == 6 && memcmp(p, "\n</s>\n", 6) == 0) || (l == 4 && memcmp(p, "</s>", 4) == 0)) name = "</s>";
        int kind = i < t->n_load_kinds ? t->load_kinds[i] : TOK_PIECE_NORMAL;
        if (name) {
            vb.pieces[i] = name;
            vb.piece_lens[i] = (uint32_t)strlen(name);
            vb.flags[i] = TOK_ID_ADDED | TOK_ID_SPECIAL;
        } else if (kind == TOK_PIECE_CONTROL || kind == TOK_PIECE_USER) {
            /* kinds come from a container that knows them (GGUF): the piece is its own name */
            vb.pieces[i] = p;
            vb.piece_lens[i] = (uint32_t)l;
            vb.flags[i] = TOK_ID_ADDED | (kind == TOK_PIECE_CONTROL ? TOK_ID_SPECIAL : 0);
        } else {
            vb.pieces[i] = p;
            vb.piece_lens[i] = (uint32_t)l;
            if (byte_piece_value(p, (size_t)l) >= 0) vb.flags[i] = TOK_ID_BYTE;
        }
    }
    if ((rc = vb_commit(&vb, t, err)) || (rc = tok_finish(t, err))) goto fail;
    /* ranks: equal scores share a rank, so ties fall to the leftmost pair as in llama2.c */
    sorted = malloc((size_t)n * sizeof *sorted);
    rank_of = malloc((size_t)n * sizeof *rank_of);
    if (!sorted || !rank_of) goto nomem;
    memcpy(sorted, t->scores, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, score_cmp_desc);
    for (int32_t i = 0; i < n; i++) {
        size_t lo = 0, hi = (size_t)n; /* first position of scores[i] in the descending order */
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (sorted[mid] > t->scores[i]) lo = mid + 1;
            else hi = mid;
        }
        rank_of[i] = (int32_t)lo;
    }
    if (tok_pair_map_init(&t->merges, (size_t)n * 2) != RLHF_OK) goto nomem;
    for (int32_t i = 0; i < n; i++) {
        if (t->flags[i] & (TOK_ID_ADDED | TOK_ID_BYTE)) continue;
        const char *s = tok_text(t, i);
        size_t l = tok_text_len(t, i);
        if (tok_text_map_find(&t->by_text, t, s, l) != i) continue; /* a duplicate string: first id wins */
        for (size_t k = 1; k < l; k++) {
            int32_t a = tok_text_map_find(&t->by_text, t, s, k), b = tok_text_map_find(&t->by_text, t, s + k, l - k);
            if (a >= 0 && b >= 0 && tok_pair_map_add(&t->merges, a, b, rank_of[i], i) != RLHF_OK) goto nomem;
        }
    }
    vb_free(&vb);
    free(sorted);
    free(rank_of);
    return RLHF_OK;
nomem:
    rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", path);
fail:
    vb_free(&vb);
    free(sorted);
    free(rank_of);
    return rc;
}

/* ---- tok_load ---- */


/* A tokenizer.json, a GPT-2 encoder.json (only when `path` names a real file, whose vocab.bpe is
 * read from beside it) or a llama2.c tokenizer.bin, from its bytes. `path` names it in messages. */
static int load_data(tokenizer *t, const char *path, int on_disk, const char *data, size_t len, rlhf_error *err) {
    int rc;
    size_t i = 0;
    while (i < len && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t')) i++;
    if (i < len && data[i] == '{') {
        cJSON *root = parse_json(path, data, len, err);
        if (!root) return RLHF_ERR_FORMAT;
        if (cJSON_IsObject(jget(root, "model"))) {
            rc = load_hf_json(t, path, root, err);
        } else if (!on_disk) {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: not a tokenizer.json (no \"model\")", path);
        } else {
            /* a GPT-2 encoder.json: its merges are in vocab.bpe beside it */
            char *dir = dir_of(path), *bpe = dir ? path_join(dir, "vocab.bpe") : NULL;
            if (!bpe)
                rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
            else if (!cJSON_IsObject(root) || !root->child || !cJSON_IsNumber(root->child))
                rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: neither a tokenizer.json (no \"model\") nor a GPT-2 encoder.json", path);
            else if (!file_exists(bpe))
                rc = rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: GPT-2 encoder.json needs its merges in %s", path, bpe);
            else
                rc = load_gpt2(t, path, root, bpe, err);
            free(dir);
            free(bpe);
        }
        cJSON_Delete(root);
    } else {
        rc = load_llama2c(t, path, (const unsigned char *)data, len, err);
    }
    return rc;
}

static int load_file(tokenizer *t, const char *path, rlhf_error *err) {
    char *data = NULL;
    size_t len;
    int rc = file_read_all(path, &data, &len, err);
    if (rc) return rc;
    rc = load_data(t, path, 1, data, len, err);
    free(data);
    return rc;
}

int tok_load_buffer(tokenizer **out, const char *name, const void *data, size_t len, const char *config_json,
                    rlhf_error *err) {
    return tok_load_buffer_kinds(out, name, data, len, config_json, NULL, 0, err);
}

int tok_load_buffer_kinds(tokenizer **out, const char *name, const void *data, size_t len, const char *config_json,
                          const uint8_t *kinds, int32_t n_kinds, rlhf_error *err) {
    *out = NULL;
    tokenizer *t = tok_alloc();
    if (!t) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory loading %s", name);
    t->load_kinds = kinds;
    t->n_load_kinds = kinds ? n_kinds : 0;
    int rc = load_data(t, name, 0, (const char *)data, len, err);
    t->load_kinds = NULL;
    t->n_load_kinds = 0;
    if (rc) {
        tok_close(&t);
        return rc;
    }
    if (config_json) apply_config_specials(t, config_json, strlen(config_json));
    *out = t;
    return RLHF_OK;
}

int tok_load(tokenizer **out, const char *path, rlhf_error *err) {
    *out = NULL;
    char *file = NULL, *dir = NULL;
    tokenizer *t = NULL;
    int rc;
    if (file_is_dir(path)) {
        static const char *const names[] = {"tokenizer.json", "encoder.json", "tokenizer.bin"};
        for (int k = 0; k < 3 && !file; k++) {
            file = path_join(path, names[k]);
            if (!file) goto nomem;
            if (!file_exists(file)) {
                free(file);
                file = NULL;
            }
        }
        if (!file)
            return rlhf_errorf(err, RLHF_ERR_NOT_FOUND,
                               "%s: no tokenizer.json, encoder.json + vocab.bpe or tokenizer.bin in this directory", path);
        dir = strdup(path);
    } else {
        if (!file_exists(path)) {
            /* file_read_all words the message (no such file, permission...) */
            char *unused;
            rc = file_read_all(path, &unused, NULL, err);
            if (rc == RLHF_OK) {
                free(unused);
                return rlhf_errorf(err, RLHF_ERR_IO, "%s: not a regular file", path);
            }
            return rc;
        }
        file = strdup(path);
        dir = dir_of(path);
    }
    t = tok_alloc();
    if (!t || !file || !dir) goto nomem;
    rc = load_file(t, file, err);
    if (rc) goto fail;
    read_config_specials(t, dir);
    free(file);
    free(dir);
    *out = t;
    return RLHF_OK;
nomem:
    rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory loading %s", path);
fail:
    tok_close(&t);
    free(file);
    free(dir);
    return rc;
}
/* ---- tok_save ---- */

static void json_chars(FILE *fp, const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", fp); break;
        case '\\': fputs("\\\\", fp); break;
        case '\n': fputs("\\n", fp); break;
        case '\r': fputs("\\r", fp); break;
        case '\t': fputs("\\t", fp); break;
        case '\b': fputs("\\b", fp); break;
        case '\f': fputs("\\f", fp); break;
        default:
            if (c < 0x20 || c == 0x7F) fprintf(fp, "\\u%04x", c);
            else fputc(c, fp);
        }
    }
}

static void json_string(FILE *fp, const char *s, size_t len) {
    fputc('"', fp);
    json_chars(fp, s, len);
    fputc('"', fp);
}

/* The piece of id as a tokenizer.json spells it; for llama2.c vocabularies the space marker is
 * written as "▁". Returns a pointer into buf or the tokenizer. */
static const char *save_piece(const tokenizer *t, int32_t id, char **buf, size_t *cap, size_t *len) {
    const char *p = t->piece_blob + t->piece_off[id];
    size_t l = strlen(p);
    if (!(t->model == TOK_MODEL_SENTENCEPIECE && t->sp_marker_space) || (t->flags[id] & (TOK_ID_ADDED | TOK_ID_BYTE))) {
        *len = l;
        return p;
    }
    if (*cap < 3 * l + 1) {
        char *q = realloc(*buf, 3 * l + 1);
        if (!q) return NULL;
        *buf = q;
        *cap = 3 * l + 1;
    }
    size_t m = 0;
    for (size_t i = 0; i < l; i++) {
        if (p[i] == ' ') {
            memcpy(*buf + m, MARKER, 3);
            m += 3;
        } else {
            (*buf)[m++] = p[i];
        }
    }
    *len = m;
    return *buf;
}

typedef struct {
    int32_t rank, left, right;
} merge_rec;

static int merge_rec_cmp(const void *a, const void *b) {
    const merge_rec *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    if (x->left != y->left) return x->left < y->left ? -1 : 1;
    return (x->right > y->right) - (x->right < y->right);
}

int tok_save(const tokenizer *t, const char *path, rlhf_error *err) {
    merge_rec *recs = NULL;
    char *buf = NULL;
    size_t cap = 0, len;
    int rc;
    for (int32_t id = 0; id < t->n_ids; id++) {
        if (!(t->flags[id] & TOK_ID_PRESENT)) continue;
        const char *p = t->piece_blob + t->piece_off[id];
        if (!utf8_is_valid(p, strlen(p)))
            return rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: token %d is not valid UTF-8, which JSON cannot hold", path, (int)id);
    }
    size_t n_merges = t->merges.n, m = 0;
    recs = malloc((n_merges + 1) * sizeof *recs);
    if (!recs) return rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < t->merges.cap; i++)
        if (t->merges.keys[i] != UINT64_MAX)
            recs[m++] = (merge_rec){t->merges.rank[i], (int32_t)(t->merges.keys[i] >> 32), (int32_t)(uint32_t)t->merges.keys[i]};
    qsort(recs, m, sizeof *recs, merge_rec_cmp);

    file_atomic fa;
    if ((rc = file_atomic_open(&fa, path, err))) {
        free(recs);
        return rc;
    }
    FILE *fp = fa.fp;
    int sp = t->model == TOK_MODEL_SENTENCEPIECE;
    fputs("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [", fp);
    int first = 1;
    for (int32_t id = 0; id < t->n_ids; id++) {
        if (!(t->flags[id] & TOK_ID_ADDED)) continue;
        fprintf(fp, "%s\n    {\"id\": %d, \"content\": ", first ? "" : ",", (int)id);
        json_string(fp, tok_text(t, id), tok_text_len(t, id));
        fprintf(fp, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": %s}",
                t->flags[id] & TOK_ID_SPECIAL ? "true" : "false");
        first = 0;
    }
    fputs(first ? "],\n" : "\n  ],\n", fp);
    if (!sp) {
        fputs("  \"normalizer\": null,\n", fp);
        const char *bl = "{\"type\": \"ByteLevel\", \"add_prefix_space\": %s, \"trim_offsets\": true, \"use_regex\": %s}";
        fputs("  \"pre_tokenizer\": ", fp);
        if (t->split == TOK_SPLIT_REGEX) {
            fputs("{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": ", fp);
            json_string(fp, t->regex_pattern, strlen(t->regex_pattern));
            fputs("}, \"behavior\": \"Isolated\", \"invert\": false}, ", fp);
            fprintf(fp, bl, t->add_prefix_space ? "true" : "false", "false");
            fputs("]}", fp);
        } else {
            fprintf(fp, bl, t->add_prefix_space ? "true" : "false", t->split == TOK_SPLIT_GPT2 ? "true" : "false");
        }
        fputs(",\n  \"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": false, \"use_regex\": true},\n", fp);
        fputs("  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n", fp);
    } else {
        if (t->sp_prefix_first || t->split == TOK_SPLIT_SPACE || !t->sp_marker_input) {
            fputs("  \"normalizer\": null,\n", fp);
            fprintf(fp, "  \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"" MARKER "\", \"prepend_scheme\": \"%s\", \"split\": %s},\n",
                    !t->sp_add_prefix ? "never" : t->sp_prefix_first ? "first" : "always", t->split == TOK_SPLIT_SPACE ? "true" : "false");
        } else {
            fputs("  \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [", fp);
            if (t->sp_add_prefix) fputs("{\"type\": \"Prepend\", \"prepend\": \"" MARKER "\"}, ", fp);
            fputs("{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"" MARKER "\"}]},\n", fp);
            fputs("  \"pre_tokenizer\": null,\n", fp);
        }
        fputs("  \"post_processor\": null,\n", fp);
        fprintf(fp, "  \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": {\"String\": \"" MARKER
                    "\"}, \"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}%s]},\n",
                t->sp_strip_space ? ", {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}" : "");
    }
    fputs("  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": ", fp);
    if (sp && t->unk >= 0) json_string(fp, tok_text(t, t->unk), tok_text_len(t, t->unk));
    else fputs("null", fp);
    fprintf(fp, ",\n    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": %s,\n"
                "    \"byte_fallback\": %s,\n    \"ignore_merges\": %s,\n    \"vocab\": {",
            t->fuse_unk ? "true" : "false", sp && t->sp_byte_fallback ? "true" : "false", t->ignore_merges ? "true" : "false");
    first = 1;
    int space_in_piece = 0;
    for (int32_t id = 0; id < t->n_ids; id++) {
        if (!(t->flags[id] & TOK_ID_PRESENT)) continue;
        const char *p = save_piece(t, id, &buf, &cap, &len);
        if (!p) goto nomem;
        if (memchr(p, ' ', len)) space_in_piece = 1;
        fputs(first ? "\n      " : ",\n      ", fp);
        json_string(fp, p, len);
        fprintf(fp, ": %d", (int)id);
        first = 0;
    }
    fputs("\n    },\n    \"merges\": [", fp);
    for (size_t i = 0; i < m; i++) {
        fputs(i ? ",\n      " : "\n      ", fp);
        const char *a = save_piece(t, recs[i].left, &buf, &cap, &len);
        if (!a) goto nomem;
        /* merges are "a b" strings, the form every version of the format reads, unless a piece
         * holds a space; then the newer ["a", "b"] form */
        if (space_in_piece) {
            fputc('[', fp);
            json_string(fp, a, len);
            fputs(", ", fp);
        } else {
            fputc('"', fp);
            json_chars(fp, a, len);
            fputc(' ', fp);
        }
        const char *b = save_piece(t, recs[i].right, &buf, &cap, &len);
        if (!b) goto nomem;
        if (space_in_piece) {
            json_string(fp, b, len);
            fputc(']', fp);
        } else {
            json_chars(fp, b, len);
            fputc('"', fp);
        }
    }
    fputs(m ? "\n    ]\n  }\n}\n" : "]\n  }\n}\n", fp);
    free(recs);
    free(buf);
    if (ferror(fp)) {
        file_atomic_abort(&fa);
        return rlhf_errorf(err, RLHF_ERR_IO, "%s: write failed", path);
    }
    return file_atomic_commit(&fa, err);
nomem:
    free(recs);
    free(buf);
    file_atomic_abort(&fa);
    return rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", path);
}
