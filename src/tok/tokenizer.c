/* tokenizer.c — the tokenizer handle: building its tables, encoding, decoding, streaming.
 *
 * Encoding a text: (1) added tokens are cut out first (special ones only when the caller allows
 * it), leftmost-longest as Hugging Face does; (2) each remaining segment is normalised
 * (SentencePiece: dummy-prefix space, "▁" in the input read as a space) and split into
 * pre-tokens (GPT-2 scanner, PCRE2 regex, spaces, or not at all); (3) each pre-token becomes
 * initial symbols (its bytes for byte-level BPE; its characters, or their <0xNN> bytes, for
 * SentencePiece) that the merge loop of tok_bpe.c joins. Files are read in tok_file.c.
 *
 * Decoding concatenates the bytes each id stands for and repairs invalid UTF-8 with U+FFFD,
 * through the same code whether the ids come all at once or one by one (tok_stream). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "src/tok/tok_internal.h"
#include "src/core/utf8.h"

static atomic_uint_fast64_t g_next_serial = 1;

/* ---- GPT-2's byte <-> character table ----
 * Bytes that are printable Latin-1 stand for themselves; the 68 others (controls, space, DEL,
 * NBSP, soft hyphen) are moved to U+0100 and up, in byte order, so every piece is printable. */

static int byte_is_printable(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

uint32_t tok_byte_to_char(unsigned b) {
    if (byte_is_printable(b)) return b;
    if (b <= 32) return 256 + b;
    if (b >= 127 && b <= 160) return 256 + 33 + (b - 127);
    return 256 + 67; /* 173, the soft hyphen */
}

int tok_char_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp < 256 + 33) return (int)(cp - 256);
    if (cp < 256 + 67) return (int)(cp - 256 - 33 + 127);
    if (cp == 256 + 67) return 173;
    return -1;
}

/* ---- lifecycle ---- */

tokenizer *tok_alloc(void) {
    tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->serial = atomic_fetch_add(&g_next_serial, 1);
    t->bos = t->eos = t->pad = t->unk = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    return t;
}

void tok_close(tokenizer **tp) {
    if (!tp || !*tp) return;
    tokenizer *t = *tp;
    free(t->piece_blob);
    free(t->piece_off);
    free(t->text_blob);
    free(t->text_off);
    free(t->flags);
    free(t->scores);
    tok_text_map_free(&t->by_text);
    tok_pair_map_free(&t->merges);
    free(t->added);
    free(t->regex_pattern);
    pretokenizer_regex_free(&t->regex);
    free(t);
    *tp = NULL;
    tok_workspace_release();
}

int tok_set_vocab(tokenizer *t, int32_t n_ids, const char *const *pieces, const uint32_t *piece_lens,
                  const char *const *texts, const uint32_t *text_lens, const uint8_t *flags,
                  rlhf_error *err) {
    size_t piece_bytes = 0, text_bytes = 0;
    for (int32_t i = 0; i < n_ids; i++) {
        if (!pieces[i]) continue;
        piece_bytes += piece_lens[i] + 1;
        text_bytes += text_lens[i] + 1;
    }
    if (piece_bytes + (size_t)n_ids >= UINT32_MAX || text_bytes + (size_t)n_ids >= UINT32_MAX)
        return rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "vocabulary strings exceed 4 GiB");
    t->n_ids = n_ids;
    t->piece_blob = malloc(piece_bytes + 1);
    t->text_blob = malloc(text_bytes + (size_t)n_ids + 1);
    t->piece_off = malloc(((size_t)n_ids + 1) * sizeof *t->piece_off);
    t->text_off = malloc(((size_t)n_ids + 1) * sizeof *t->text_off);
    t->flags = calloc((size_t)n_ids + 1, 1);
    if (!t->piece_blob || !t->text_blob || !t->piece_off || !t->text_off || !t->flags)
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for a vocabulary of %d ids", (int)n_ids);
    size_t p = 0, q = 0;
    /* unused ids share an empty piece at the end of the piece blob */
    size_t empty_piece = piece_bytes;
    t->piece_blob[empty_piece] = '\0';
    for (int32_t i = 0; i < n_ids; i++) {
        t->text_off[i] = (uint32_t)q;
        if (!pieces[i]) {
            t->piece_off[i] = (uint32_t)empty_piece;
            t->text_blob[q++] = '\0';
            continue;
        }
        t->piece_off[i] = (uint32_t)p;
        if (piece_lens[i]) memcpy(t->piece_blob + p, pieces[i], piece_lens[i]);
        p += piece_lens[i];
        t->piece_blob[p++] = '\0';
        /* an empty text may have no storage at all (memcpy's pointers must not be NULL) */
        if (text_lens[i]) memcpy(t->text_blob + q, texts[i], text_lens[i]);
        q += text_lens[i];
        t->text_blob[q++] = '\0';
        t->flags[i] = (uint8_t)(flags[i] | TOK_ID_PRESENT);
    }
    t->text_off[n_ids] = (uint32_t)q;
    return RLHF_OK;
}

static int added_cmp(const void *a, const void *b) {
    const tok_added *x = a, *y = b;
    unsigned cx = (unsigned char)x->text[0], cy = (unsigned char)y->text[0];
    if (cx != cy) return cx < cy ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int32_t find_added_named(const tokenizer *t, const char *const *names) {
    for (int k = 0; names[k]; k++) {
        int32_t id = tok_special_id(t, names[k]);
        if (id >= 0) return id;
    }
    return -1;
}

int tok_finish(tokenizer *t, rlhf_error *err) {
    if (tok_text_map_init(&t->by_text, (size_t)t->n_ids) != RLHF_OK) goto nomem;
    int n_added = 0;
    for (int32_t i = 0; i < t->n_ids; i++) {
        uint8_t f = t->flags[i];
        if (!(f & TOK_ID_PRESENT)) continue;
        if (f & TOK_ID_ADDED) {
            if (tok_text_len(t, i) > 0) n_added++;
            continue;
        }
        if (f & TOK_ID_BYTE) {
            t->byte_id[(unsigned char)tok_text(t, i)[0]] = i;
            continue;
        }
        if (tok_text_map_add(&t->by_text, t, i) != RLHF_OK) goto nomem;
    }
    if (t->model == TOK_MODEL_SENTENCEPIECE) {
        /* A merge joins two adjacent symbols into a token; if no token has a space right after a
         * non-space, no merge can join a symbol ending in a non-space with one starting with a
         * space, so the whole-text BPE of SentencePiece falls apart into independent words (and
         * the word cache applies). True of SentencePiece vocabularies trained with whitespace
         * splitting, i.e. all Llama-family ones. */
        t->sp_words = 1;
        for (int32_t i = 0; i < t->n_ids && t->sp_words; i++) {
            if ((t->flags[i] & (TOK_ID_ADDED | TOK_ID_BYTE)) || !(t->flags[i] & TOK_ID_PRESENT)) continue;
            const char *s = tok_text(t, i);
            size_t l = tok_text_len(t, i);
            for (size_t k = 1; k < l; k++)
                if (s[k] == ' ' && s[k - 1] != ' ') {
                    t->sp_words = 0;
                    break;
                }
        }
    }
    if (t->model == TOK_MODEL_BYTE_LEVEL) {
        for (int b = 0; b < 256; b++) {
            char c = (char)b;
            t->byte_id[b] = tok_text_map_find(&t->by_text, t, &c, 1);
            if (t->byte_id[b] < 0)
                return rlhf_errorf(err, RLHF_ERR_FORMAT, "byte-level vocabulary has no token for byte 0x%02X", b);
        }
    }
    free(t->added);
    t->added = n_added ? malloc((size_t)n_added * sizeof *t->added) : NULL;
    if (n_added && !t->added) goto nomem;
    t->n_added = 0;
    t->has_plain_added = 0;
    for (int32_t i = 0; i < t->n_ids; i++) {
        if (!(t->flags[i] & TOK_ID_ADDED) || tok_text_len(t, i) == 0) continue;
        t->added[t->n_added++] = (tok_added){i, (uint32_t)tok_text_len(t, i), tok_text(t, i)};
        if (!(t->flags[i] & TOK_ID_SPECIAL)) t->has_plain_added = 1;
    }
    if (t->n_added) qsort(t->added, (size_t)t->n_added, sizeof *t->added, added_cmp);
    int k = 0;
    for (int b = 0; b < 256; b++) {
        t->added_begin[b] = k;
        while (k < t->n_added && (unsigned char)t->added[k].text[0] == b) k++;
    }
    t->added_begin[256] = k;

    static const char *const bos_names[] = {"<|begin_of_text|>", "<s>", "<|startoftext|>", "<bos>", "<BOS>", NULL};
    static const char *const eos_names[] = {"<|end_of_text|>", "</s>", "<|endoftext|>", "<eos>", "<EOS>", NULL};
    static const char *const pad_names[] = {"<pad>", "<|pad|>", "[PAD]", "<PAD>", "<|finetune_right_pad_id|>", NULL};
    static const char *const unk_names[] = {"<unk>", "<UNK>", "[UNK]", NULL};
    if (t->bos < 0) t->bos = find_added_named(t, bos_names);
    if (t->eos < 0) t->eos = find_added_named(t, eos_names);
    /* GPT-2 and the tokenizers trained here use <|endoftext|> both to start and to end a text */
    if (t->bos < 0 && t->eos >= 0 && strcmp(tok_text(t, t->eos), "<|endoftext|>") == 0) t->bos = t->eos;
    if (t->pad < 0) t->pad = find_added_named(t, pad_names);
    if (t->unk < 0) t->unk = find_added_named(t, unk_names);
    return RLHF_OK;
nomem:
    return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory building tokenizer tables");
}

int tok_new_bytes(tokenizer **out, rlhf_error *err) {
    *out = NULL;
    tokenizer *t = tok_alloc();
    if (!t) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory for the byte tokenizer");
    const char *pieces[256], *texts[256];
    uint32_t piece_lens[256], text_lens[256];
    uint8_t flags[256] = {0};
    char piece_buf[256][4], text_buf[256];
    for (int b = 0; b < 256; b++) {
        piece_lens[b] = (uint32_t)utf8_encode(tok_byte_to_char((unsigned)b), piece_buf[b]);
        pieces[b] = piece_buf[b];
        text_buf[b] = (char)b;
        texts[b] = &text_buf[b];
        text_lens[b] = 1;
    }
    t->model = TOK_MODEL_BYTE_LEVEL;
    t->split = TOK_SPLIT_GPT2;
    int rc = tok_set_vocab(t, 256, pieces, piece_lens, texts, text_lens, flags, err);
    if (rc == RLHF_OK) rc = tok_finish(t, err);
    if (rc != RLHF_OK) {
        tok_close(&t);
        return rc;
    }
    *out = t;
    return RLHF_OK;
}

/* ---- accessors ---- */

int tok_vocab_size(const tokenizer *t) { return (int)t->n_ids; }
int32_t tok_bos_id(const tokenizer *t) { return t->bos; }
int32_t tok_eos_id(const tokenizer *t) { return t->eos; }
int32_t tok_pad_id(const tokenizer *t) { return t->pad; }

int32_t tok_special_id(const tokenizer *t, const char *text) {
    size_t len = strlen(text);
    if (len == 0) return -1;
    unsigned b = (unsigned char)text[0];
    for (int k = t->added_begin[b]; k < t->added_begin[b + 1]; k++)
        if (t->added[k].len == len && memcmp(t->added[k].text, text, len) == 0) return t->added[k].id;
    return -1;
}

const char *tok_piece(const tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_ids || !(t->flags[id] & TOK_ID_PRESENT)) return NULL;
    return t->piece_blob + t->piece_off[id];
}

int tok_id_is_special(const tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids && (t->flags[id] & TOK_ID_SPECIAL) != 0;
}

/* ---- encoding ---- */

static inline int push_id(tok_ids *out, int32_t id) {
    if (out->n == out->cap && tok_ids_reserve(out, out->n + 1) != RLHF_OK) return RLHF_ERR_NOMEM;
    out->ids[out->n++] = id;
    return RLHF_OK;
}

/* The leftmost (then longest) added token in s[pos..n) the flags allow; -1 if none. */
static int32_t find_added(const tokenizer *t, const unsigned char *s, size_t n, size_t pos, int allow_special,
                          size_t *start, size_t *end) {
    for (size_t p = pos; p < n; p++) {
        unsigned b = s[p];
        int k0 = t->added_begin[b], k1 = t->added_begin[b + 1];
        for (int k = k0; k < k1; k++) {
            const tok_added *a = &t->added[k];
            if (a->len > n - p || memcmp(s + p, a->text, a->len) != 0) continue;
            if (!allow_special && (t->flags[a->id] & TOK_ID_SPECIAL)) continue;
            *start = p;
            *end = p + a->len;
            return a->id;
        }
    }
    return -1;
}

/* One byte-level pre-token: its whole text if that is a token and merges may be skipped, the
 * cache, or the merge loop over its bytes. */
static int encode_bytes_word(const tokenizer *t, tok_workspace *ws, const unsigned char *s, size_t n, tok_ids *out) {
    if (n == 1 || t->merges.n == 0) {
        if (tok_ids_reserve(out, out->n + n) != RLHF_OK) return RLHF_ERR_NOMEM;
        for (size_t i = 0; i < n; i++) out->ids[out->n++] = t->byte_id[s[i]];
        return RLHF_OK;
    }
    if (t->ignore_merges) {
        int32_t id = tok_text_map_find(&t->by_text, t, (const char *)s, n);
        if (id >= 0) return push_id(out, id);
    }
    const int32_t *cached;
    size_t n_cached;
    if (tok_cache_find(ws, (const char *)s, n, &cached, &n_cached)) {
        if (tok_ids_reserve(out, out->n + n_cached) != RLHF_OK) return RLHF_ERR_NOMEM;
        memcpy(out->ids + out->n, cached, n_cached * sizeof *cached);
        out->n += n_cached;
        return RLHF_OK;
    }
    int32_t *sym = tok_workspace_symbols(ws, n);
    if (!sym) return RLHF_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) sym[i] = t->byte_id[s[i]];
    size_t m = tok_bpe_merge(t, ws, sym, n, 0);
    if (m == (size_t)-1 || tok_ids_reserve(out, out->n + m) != RLHF_OK) return RLHF_ERR_NOMEM;
    memcpy(out->ids + out->n, sym, m * sizeof *sym);
    tok_cache_put(ws, (const char *)s, n, out->ids + out->n, m);
    out->n += m;
    return RLHF_OK;
}

static int encode_byte_level(const tokenizer *t, tok_workspace *ws, const unsigned char *s, size_t n, tok_ids *out,
                             rlhf_error *err) {
    if (n == 0) return RLHF_OK;
    if (t->add_prefix_space && s[0] != ' ') {
        unsigned char *buf = (unsigned char *)tok_workspace_buffer(ws, n + 1);
        if (!buf) return RLHF_ERR_NOMEM;
        buf[0] = ' ';
        memcpy(buf + 1, s, n);
        s = buf;
        n++;
    }
    int rc = RLHF_OK;
    if (t->merges.n == 0 || t->split == TOK_SPLIT_NONE) return encode_bytes_word(t, ws, s, n, out);
    if (t->split == TOK_SPLIT_GPT2) {
        for (size_t pos = 0; pos < n && rc == RLHF_OK;) {
            size_t end = pretokenizer_gpt2_next(s, n, pos);
            rc = encode_bytes_word(t, ws, s + pos, end - pos, out);
            pos = end;
        }
        return rc;
    }
    /* TOK_SPLIT_REGEX: matches and the gaps between them are pieces */
    pretokenizer_match_state *st = tok_workspace_match_state(ws);
    size_t pos = 0;
    while (pos < n && rc == RLHF_OK) {
        size_t ms, me;
        int found = pretokenizer_regex_find(&t->regex, st, s, n, pos, &ms, &me, err);
        if (found < 0) return found;
        if (!found) ms = me = n;
        if (ms > pos) rc = encode_bytes_word(t, ws, s + pos, ms - pos, out);
        if (rc == RLHF_OK && me > ms) rc = encode_bytes_word(t, ws, s + ms, me - ms, out);
        pos = me;
    }
    return rc;
}

/* One SentencePiece word (already normalised: spaces stand for the marker): characters that are
 * tokens, else their bytes' <0xNN> tokens, else unk; then the merge loop. */
static int encode_sp_word(const tokenizer *t, tok_workspace *ws, const unsigned char *s, size_t n, int use_cache,
                          tok_ids *out, rlhf_error *err) {
    if (n == 0) return RLHF_OK;
    const int32_t *cached;
    size_t n_cached;
    if (use_cache && tok_cache_find(ws, (const char *)s, n, &cached, &n_cached)) {
        if (tok_ids_reserve(out, out->n + n_cached) != RLHF_OK) return RLHF_ERR_NOMEM;
        memcpy(out->ids + out->n, cached, n_cached * sizeof *cached);
        out->n += n_cached;
        return RLHF_OK;
    }
    int32_t *sym = tok_workspace_symbols(ws, n);
    if (!sym) return RLHF_ERR_NOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        size_t len = 1;
        if (s[i] >= 0x80) {
            uint32_t cp;
            int k = utf8_decode(s + i, n - i, &cp);
            len = k > 0 ? (size_t)k : 1;
        }
        int32_t id = tok_text_map_find(&t->by_text, t, (const char *)s + i, len);
        if (id >= 0) {
            sym[m++] = id;
        } else {
            int all_bytes = t->sp_byte_fallback;
            for (size_t j = 0; j < len && all_bytes; j++) all_bytes = t->byte_id[s[i + j]] >= 0;
            if (all_bytes) {
                for (size_t j = 0; j < len; j++) sym[m++] = t->byte_id[s[i + j]];
            } else if (t->unk >= 0) {
                if (!(t->fuse_unk && m > 0 && sym[m - 1] == t->unk)) sym[m++] = t->unk;
            } else {
                return rlhf_errorf(err, RLHF_ERR_INVALID,
                                   "character at byte %zu is not in the vocabulary and the tokenizer has no unknown token", i);
            }
        }
        i += len;
    }
    size_t merged = tok_bpe_merge(t, ws, sym, m, 0);
    if (merged == (size_t)-1 || tok_ids_reserve(out, out->n + merged) != RLHF_OK) return RLHF_ERR_NOMEM;
    memcpy(out->ids + out->n, sym, merged * sizeof *sym);
    if (use_cache) tok_cache_put(ws, (const char *)s, n, out->ids + out->n, merged);
    out->n += merged;
    return RLHF_OK;
}

static int encode_sentencepiece(const tokenizer *t, tok_workspace *ws, const unsigned char *s, size_t n,
                                int at_text_start, tok_ids *out, rlhf_error *err) {
    if (n == 0) return RLHF_OK;
    int prefix = t->sp_add_prefix && (!t->sp_prefix_first || at_text_start);
    unsigned char *buf = (unsigned char *)tok_workspace_buffer(ws, n + 1);
    if (!buf) return RLHF_ERR_NOMEM;
    size_t m = 0;
    if (prefix) buf[m++] = ' ';
    for (size_t i = 0; i < n; i++) {
        /* "▁" typed in the text is the marker after Hugging Face's normalisers: read it as a space */
        if (t->sp_marker_input && s[i] == 0xE2 && i + 2 < n && s[i + 1] == 0x96 && s[i + 2] == 0x81) {
            buf[m++] = ' ';
            i += 2;
            continue;
        }
        buf[m++] = s[i];
    }
    /* The word scratch (symbols) is separate from buf, so buf stays valid while words are encoded. */
    int rc = RLHF_OK;
    if (t->split == TOK_SPLIT_SPACE) {
        /* Metaspace split: a word starts at every space */
        for (size_t start = 0; start < m && rc == RLHF_OK;) {
            size_t end = start + 1;
            while (end < m && buf[end] != ' ') end++;
            rc = encode_sp_word(t, ws, buf + start, end - start, 1, out, err);
            start = end;
        }
        return rc;
    }
    if (!t->sp_words) return encode_sp_word(t, ws, buf, m, 0, out, err);
    /* whole-text BPE cut where no merge can reach across (see sp_words in tok_finish) */
    for (size_t start = 0; start < m && rc == RLHF_OK;) {
        size_t end = start + 1;
        while (end < m && !(buf[end] == ' ' && buf[end - 1] != ' ')) end++;
        rc = encode_sp_word(t, ws, buf + start, end - start, 1, out, err);
        start = end;
    }
    return rc;
}

int tok_encode(const tokenizer *t, const char *text, size_t len, unsigned flags, tok_ids *out, rlhf_error *err) {
    if (!(flags & TOK_ENCODE_APPEND)) out->n = 0;
    if (flags & TOK_ENCODE_ADD_BOS) {
        if (t->bos < 0) return rlhf_errorf(err, RLHF_ERR_INVALID, "this tokenizer has no BOS token");
        if (push_id(out, t->bos) != RLHF_OK) goto nomem;
    }
    if (len == 0) return RLHF_OK;
    tok_workspace *ws = tok_workspace_get(t);
    if (!ws) goto nomem;
    const unsigned char *s = (const unsigned char *)text;
    int allow_special = (flags & TOK_ENCODE_ALLOW_SPECIAL) != 0;
    int scan_added = t->n_added > 0 && (allow_special || t->has_plain_added);
    size_t pos = 0;
    for (;;) {
        size_t ms = len, me = len;
        int32_t id = scan_added ? find_added(t, s, len, pos, allow_special, &ms, &me) : -1;
        int rc;
        if (t->model == TOK_MODEL_BYTE_LEVEL) rc = encode_byte_level(t, ws, s + pos, ms - pos, out, err);
        else rc = encode_sentencepiece(t, ws, s + pos, ms - pos, pos == 0, out, err);
        if (rc == RLHF_ERR_NOMEM) goto nomem;
        if (rc != RLHF_OK) return rc;
        if (id < 0) break;
        if (push_id(out, id) != RLHF_OK) goto nomem;
        pos = me;
    }
    return RLHF_OK;
nomem:
    return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory encoding %zu bytes", len);
}

/* ---- decoding ---- */

typedef struct {
    char *p;
    size_t n, cap;
} byte_buf;

static int buf_put(byte_buf *b, const void *data, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n + 1) c *= 2;
        char *q = realloc(b->p, c);
        if (!q) return RLHF_ERR_NOMEM;
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    b->p[b->n] = '\0';
    return RLHF_OK;
}

/* Appends s[0..n) to o with invalid UTF-8 replaced, continuing a character held in
 * pending[0..*n_pending) from earlier calls; a character cut by the end of s is kept pending
 * unless `final`, when it becomes one U+FFFD. The result is the same however the bytes are cut
 * into calls, because utf8_decode needs at most the four bytes a character can have. */
static int repair_append(byte_buf *o, unsigned char *pending, int *n_pending, const unsigned char *s, size_t n,
                         int final) {
    size_t i = 0;
    while (*n_pending > 0) {
        unsigned char tmp[4];
        int m = *n_pending;
        memcpy(tmp, pending, (size_t)m);
        size_t take = 0;
        while (m < 4 && take < n) tmp[m++] = s[take++];
        uint32_t cp;
        int k = utf8_decode(tmp, (size_t)m, &cp);
        if (k > 0) {
            if (buf_put(o, tmp, (size_t)k)) return RLHF_ERR_NOMEM;
            i = (size_t)k - (size_t)*n_pending;
            *n_pending = 0;
        } else if (k == 0) {
            /* still incomplete, so all of s went into tmp */
            if (final) {
                if (buf_put(o, UTF8_REPLACEMENT, 3)) return RLHF_ERR_NOMEM;
                *n_pending = 0;
            } else {
                memcpy(pending, tmp, (size_t)m);
                *n_pending = m;
            }
            return RLHF_OK;
        } else {
            if (buf_put(o, UTF8_REPLACEMENT, 3)) return RLHF_ERR_NOMEM;
            int bad = -k;
            if (bad < *n_pending) {
                memmove(pending, pending + bad, (size_t)(*n_pending - bad));
                *n_pending -= bad;
            } else {
                i = (size_t)(bad - *n_pending);
                *n_pending = 0;
            }
        }
    }
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] < 0x80) j++;
        if (j > i && buf_put(o, s + i, j - i)) return RLHF_ERR_NOMEM;
        i = j;
        if (i >= n) break;
        uint32_t cp;
        int k = utf8_decode(s + i, n - i, &cp);
        if (k > 0) {
            if (buf_put(o, s + i, (size_t)k)) return RLHF_ERR_NOMEM;
            i += (size_t)k;
        } else if (k < 0) {
            if (buf_put(o, UTF8_REPLACEMENT, 3)) return RLHF_ERR_NOMEM;
            i += (size_t)-k;
        } else {
            if (final) {
                if (buf_put(o, UTF8_REPLACEMENT, 3)) return RLHF_ERR_NOMEM;
            } else {
                memcpy(pending, s + i, n - i);
                *n_pending = (int)(n - i);
            }
            break;
        }
    }
    return RLHF_OK;
}

/* Bytes id stands for in the decoded text, the dummy-prefix space dropped at the start. */
static const char *id_bytes(const tokenizer *t, int32_t id, int *at_start, size_t *len) {
    const char *s = tok_text(t, id);
    *len = tok_text_len(t, id);
    if (t->model == TOK_MODEL_SENTENCEPIECE && t->sp_strip_space) {
        if (*at_start && *len > 0 && s[0] == ' ') {
            s++;
            (*len)--;
        }
        /* after BOS the text starts again, as llama2.c prints it */
        *at_start = id == t->bos;
    }
    return s;
}

static int check_id(const tokenizer *t, int32_t id, rlhf_error *err) {
    if (id < 0 || id >= t->n_ids || !(t->flags[id] & TOK_ID_PRESENT))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "token id %d is not in the vocabulary (size %d)", (int)id,
                           (int)t->n_ids);
    return RLHF_OK;
}

int tok_decode(const tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len, rlhf_error *err) {
    *text = NULL;
    if (len) *len = 0;
    byte_buf o = {0};
    unsigned char pending[4];
    int n_pending = 0, at_start = 1, rc;
    if (buf_put(&o, "", 0)) goto nomem;
    for (size_t i = 0; i < n; i++) {
        if ((rc = check_id(t, ids[i], err)) != RLHF_OK) {
            free(o.p);
            return rc;
        }
        size_t bl;
        const char *b = id_bytes(t, ids[i], &at_start, &bl);
        if (repair_append(&o, pending, &n_pending, (const unsigned char *)b, bl, 0)) goto nomem;
    }
    if (repair_append(&o, pending, &n_pending, NULL, 0, 1)) goto nomem;
    *text = o.p;
    if (len) *len = o.n;
    return RLHF_OK;
nomem:
    free(o.p);
    return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory decoding %zu ids", n);
}

int tok_stream_init(tok_stream *s, const tokenizer *t, unsigned flags, rlhf_error *err) {
    (void)err;
    memset(s, 0, sizeof *s);
    s->tok = t;
    s->at_start = !(flags & TOK_STREAM_MID_SEQUENCE);
    return RLHF_OK;
}

static int stream_emit(tok_stream *s, const unsigned char *b, size_t n, int final, const char **text, size_t *len,
                       rlhf_error *err) {
    byte_buf o = {s->out, 0, s->out_cap};
    int rc = buf_put(&o, "", 0);
    if (rc == RLHF_OK) rc = repair_append(&o, s->pending, &s->n_pending, b, n, final);
    s->out = o.p;
    s->out_cap = o.cap;
    if (rc != RLHF_OK) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory decoding a token");
    *text = s->out;
    if (len) *len = o.n;
    return RLHF_OK;
}

int tok_stream_push(tok_stream *s, int32_t id, const char **text, size_t *len, rlhf_error *err) {
    *text = "";
    if (len) *len = 0;
    int rc = check_id(s->tok, id, err);
    if (rc != RLHF_OK) return rc;
    size_t bl;
    const char *b = id_bytes(s->tok, id, &s->at_start, &bl);
    return stream_emit(s, (const unsigned char *)b, bl, 0, text, len, err);
}

int tok_stream_flush(tok_stream *s, const char **text, size_t *len, rlhf_error *err) {
    int rc = stream_emit(s, NULL, 0, 1, text, len, err);
    s->at_start = 1;
    return rc;
}

void tok_stream_free(tok_stream *s) {
    if (!s) return;
    free(s->out);
    s->out = NULL;
    s->out_cap = 0;
    s->n_pending = 0;
}
