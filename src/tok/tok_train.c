/* tok_train.c — learning a byte-level BPE vocabulary (GPT-2 pre-tokenizer), as Hugging Face's
 * BpeTrainer does.
 *
 * 1. Count: each corpus file is cut around the special tokens, split into GPT-2 pre-tokens, and
 *    every distinct pre-token ("word") is counted once, so the rest of the work is proportional to
 *    the number of distinct words, not to the corpus size.
 * 2. Pairs: every adjacent pair of symbols in every word is counted (weighted by the word's
 *    count) and remembers which words hold it.
 * 3. Merge: the most frequent pair (ties: the pair of smaller ids, so the result depends on the
 *    input alone) becomes a new token; only the words holding it are rewritten, and the counts of
 *    the pairs around each rewritten occurrence are adjusted. A max-heap holds pair counts lazily:
 *    counts only fall except for pairs containing the new token, which are pushed afresh, so a
 *    popped entry whose count is stale is pushed back with its true count. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "src/core/fileio.h"
#include "src/tok/tok_internal.h"
#include "src/core/utf8.h"

typedef struct {
    int64_t count;
    int32_t left, right;
    int32_t *words; /* (n_words) indices of words that held the pair when it was counted */
    int32_t n_words, cap_words;
    int32_t pushed_at; /* merge step at which it was last pushed as a new pair */
} train_pair;

typedef struct {
    int64_t count;
    int32_t pair;
} heap_item;

typedef struct {
    /* distinct words */
    char *keys;         /* bytes of every word, back to back */
    size_t keys_used, keys_cap;
    uint32_t *key_off;  /* (n_words) */
    uint32_t *key_len;  /* (n_words) */
    int64_t *count;     /* (n_words) */
    int32_t n_words, cap_words;
    int32_t *slots;     /* (slot_cap) word index or -1: hash of word bytes */
    size_t slot_cap;
    /* symbols of every word, rewritten in place as merges apply */
    int32_t *sym;       /* all words back to back */
    uint32_t *sym_off;  /* (n_words) */
    uint32_t *sym_len;  /* (n_words) */
    int32_t *stamp;     /* (n_words) last merge step that rewrote the word */
    /* pairs */
    train_pair *pairs;
    int32_t n_pairs, cap_pairs;
    tok_pair_map pair_index; /* (left, right) -> index in pairs (stored as rank) */
    heap_item *heap;
    size_t heap_n, heap_cap;
    int32_t *touched;   /* pairs created by the current merge */
    size_t n_touched, cap_touched;
} trainer;

static void trainer_free(trainer *tr) {
    free(tr->keys);
    free(tr->key_off);
    free(tr->key_len);
    free(tr->count);
    free(tr->slots);
    free(tr->sym);
    free(tr->sym_off);
    free(tr->sym_len);
    free(tr->stamp);
    for (int32_t i = 0; i < tr->n_pairs; i++) free(tr->pairs[i].words);
    free(tr->pairs);
    tok_pair_map_free(&tr->pair_index);
    free(tr->heap);
    free(tr->touched);
    memset(tr, 0, sizeof *tr);
}

static int grow_array(void **p, size_t need, size_t *cap, size_t elem) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap * 2 : 1024;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

/* ---- 1. counting words ---- */

static int word_slots_rehash(trainer *tr, size_t cap) {
    int32_t *slots = malloc(cap * sizeof *slots);
    if (!slots) return 0;
    memset(slots, 0xFF, cap * sizeof *slots);
    for (int32_t w = 0; w < tr->n_words; w++) {
        size_t i = tok_hash_bytes(tr->keys + tr->key_off[w], tr->key_len[w]) & (cap - 1);
        while (slots[i] >= 0) i = (i + 1) & (cap - 1);
        slots[i] = w;
    }
    free(tr->slots);
    tr->slots = slots;
    tr->slot_cap = cap;
    return 1;
}

static int count_word(trainer *tr, const char *s, size_t len) {
    if ((size_t)tr->n_words * 2 + 2 > tr->slot_cap && !word_slots_rehash(tr, tr->slot_cap ? tr->slot_cap * 2 : 1 << 16))
        return 0;
    size_t i = tok_hash_bytes(s, len) & (tr->slot_cap - 1);
    for (;;) {
        int32_t w = tr->slots[i];
        if (w < 0) break;
        if (tr->key_len[w] == len && memcmp(tr->keys + tr->key_off[w], s, len) == 0) {
            tr->count[w]++;
            return 1;
        }
        i = (i + 1) & (tr->slot_cap - 1);
    }
    if (tr->keys_used + len > UINT32_MAX || tr->n_words == INT32_MAX) return 0;
    size_t cap = (size_t)tr->cap_words;
    if (!grow_array((void **)&tr->keys, tr->keys_used + len, &tr->keys_cap, 1)) return 0;
    if ((size_t)tr->n_words + 1 > cap) {
        size_t c1 = cap, c2 = cap, c3 = cap;
        if (!grow_array((void **)&tr->key_off, (size_t)tr->n_words + 1, &c1, sizeof *tr->key_off) ||
            !grow_array((void **)&tr->key_len, (size_t)tr->n_words + 1, &c2, sizeof *tr->key_len) ||
            !grow_array((void **)&tr->count, (size_t)tr->n_words + 1, &c3, sizeof *tr->count))
            return 0;
        tr->cap_words = (int32_t)(c1 < c2 ? (c1 < c3 ? c1 : c3) : (c2 < c3 ? c2 : c3));
    }
    int32_t w = tr->n_words++;
    memcpy(tr->keys + tr->keys_used, s, len);
    tr->key_off[w] = (uint32_t)tr->keys_used;
    tr->key_len[w] = (uint32_t)len;
    tr->count[w] = 1;
    tr->keys_used += len;
    tr->slots[i] = w;
    return 1;
}

/* Leftmost-longest special token in s[pos..n), as encoding cuts them out. */
static int find_special(const char *s, size_t n, size_t pos, const char *const *specials, int n_specials,
                        const unsigned char *first, size_t *start, size_t *end) {
    for (size_t p = pos; p < n; p++) {
        if (!first[(unsigned char)s[p]]) continue;
        size_t best = 0;
        for (int k = 0; k < n_specials; k++) {
            size_t l = strlen(specials[k]);
            if (l > best && l <= n - p && memcmp(s + p, specials[k], l) == 0) best = l;
        }
        if (best) {
            *start = p;
            *end = p + best;
            return 1;
        }
    }
    return 0;
}

static int count_text(trainer *tr, const char *text, size_t len, const char *const *specials, int n_specials,
                      const unsigned char *special_first) {
    const unsigned char *s = (const unsigned char *)text;
    for (size_t pos = 0; pos < len;) {
        size_t ms = len, me = len;
        if (n_specials) find_special(text, len, pos, specials, n_specials, special_first, &ms, &me);
        for (size_t p = pos; p < ms;) {
            size_t e = pretokenizer_gpt2_next(s, ms, p);
            if (!count_word(tr, text + p, e - p)) return 0;
            p = e;
        }
        pos = me;
    }
    return 1;
}

/* ---- 2. pairs ---- */

static int32_t pair_get(trainer *tr, int32_t left, int32_t right) {
    int32_t idx, unused;
    if (tok_pair_map_find(&tr->pair_index, left, right, &idx, &unused)) return idx;
    size_t cap = (size_t)tr->cap_pairs;
    if (!grow_array((void **)&tr->pairs, (size_t)tr->n_pairs + 1, &cap, sizeof *tr->pairs)) return -1;
    tr->cap_pairs = (int32_t)cap;
    idx = tr->n_pairs++;
    tr->pairs[idx] = (train_pair){0, left, right, NULL, 0, 0, -1};
    if (tok_pair_map_add(&tr->pair_index, left, right, idx, 0) != RLHF_OK) return -1;
    return idx;
}

/* Adds delta occurrences of (left, right) held by word w. */
static int pair_add(trainer *tr, int32_t left, int32_t right, int64_t delta, int32_t w) {
    int32_t p = pair_get(tr, left, right);
    if (p < 0) return 0;
    train_pair *pr = &tr->pairs[p];
    pr->count += delta;
    if (delta > 0 && (pr->n_words == 0 || pr->words[pr->n_words - 1] != w)) {
        size_t cap = (size_t)pr->cap_words;
        if (!grow_array((void **)&pr->words, (size_t)pr->n_words + 1, &cap, sizeof *pr->words)) return 0;
        pr->cap_words = (int32_t)cap;
        pr->words[pr->n_words++] = w;
    }
    return 1;
}

static int heap_before(const trainer *tr, const heap_item *a, const heap_item *b) {
    if (a->count != b->count) return a->count > b->count;
    const train_pair *x = &tr->pairs[a->pair], *y = &tr->pairs[b->pair];
    if (x->left != y->left) return x->left < y->left;
    return x->right < y->right;
}

static int heap_push(trainer *tr, heap_item it) {
    if (!grow_array((void **)&tr->heap, tr->heap_n + 1, &tr->heap_cap, sizeof *tr->heap)) return 0;
    size_t i = tr->heap_n++;
    tr->heap[i] = it;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_before(tr, &tr->heap[i], &tr->heap[p])) break;
        heap_item t = tr->heap[i];
        tr->heap[i] = tr->heap[p];
        tr->heap[p] = t;
        i = p;
    }
    return 1;
}

static heap_item heap_pop(trainer *tr) {
    heap_item top = tr->heap[0];
    tr->heap[0] = tr->heap[--tr->heap_n];
    size_t i = 0, n = tr->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && heap_before(tr, &tr->heap[l], &tr->heap[m])) m = l;
        if (r < n && heap_before(tr, &tr->heap[r], &tr->heap[m])) m = r;
        if (m == i) break;
        heap_item t = tr->heap[i];
        tr->heap[i] = tr->heap[m];
        tr->heap[m] = t;
        i = m;
    }
    return top;
}

/* Records that the current merge made pair p (pushed on the heap once the merge is done). */
static int touch(trainer *tr, int32_t left, int32_t right, int32_t step) {
    int32_t idx, unused;
    if (!tok_pair_map_find(&tr->pair_index, left, right, &idx, &unused)) return 1;
    if (tr->pairs[idx].pushed_at == step) return 1;
    tr->pairs[idx].pushed_at = step;
    if (!grow_array((void **)&tr->touched, tr->n_touched + 1, &tr->cap_touched, sizeof *tr->touched)) return 0;
    tr->touched[tr->n_touched++] = idx;
    return 1;
}

/* Rewrites every occurrence of (left, right) in word w as `id`, adjusting neighbouring pairs. */
static int merge_word(trainer *tr, int32_t w, int32_t left, int32_t right, int32_t id, int32_t step) {
    int32_t *s = tr->sym + tr->sym_off[w];
    uint32_t n = tr->sym_len[w];
    int64_t c = tr->count[w];
    for (uint32_t i = 0; i + 1 < n; i++) {
        if (s[i] != left || s[i + 1] != right) continue;
        if (i > 0) {
            if (!pair_add(tr, s[i - 1], left, -c, w) || !pair_add(tr, s[i - 1], id, c, w) || !touch(tr, s[i - 1], id, step))
                return 0;
        }
        if (i + 2 < n) {
            if (!pair_add(tr, right, s[i + 2], -c, w) || !pair_add(tr, id, s[i + 2], c, w) || !touch(tr, id, s[i + 2], step))
                return 0;
        }
        if (!pair_add(tr, left, right, -c, w)) return 0;
        s[i] = id;
        memmove(s + i + 1, s + i + 2, (n - i - 2) * sizeof *s);
        n--;
    }
    tr->sym_len[w] = n;
    return 1;
}

/* ---- the result ---- */

static int build_tokenizer(tokenizer **out, const int32_t *merge_left, const int32_t *merge_right,
                           int32_t n_merges, const char *const *specials, int n_specials, rlhf_error *err) {
    int32_t n_ids = n_specials + 256 + n_merges;
    const char **pieces = calloc((size_t)n_ids, sizeof *pieces), **texts = calloc((size_t)n_ids, sizeof *texts);
    uint32_t *piece_lens = calloc((size_t)n_ids, sizeof *piece_lens), *text_lens = calloc((size_t)n_ids, sizeof *text_lens);
    uint8_t *flags = calloc((size_t)n_ids, 1);
    char **owned = calloc((size_t)n_ids, sizeof *owned);
    tokenizer *t = tok_alloc();
    int rc = RLHF_OK;
    if (!pieces || !texts || !piece_lens || !text_lens || !flags || !owned || !t) goto nomem;
    for (int k = 0; k < n_specials; k++) {
        pieces[k] = texts[k] = specials[k];
        piece_lens[k] = text_lens[k] = (uint32_t)strlen(specials[k]);
        flags[k] = TOK_ID_ADDED | TOK_ID_SPECIAL;
    }
    /* bytes in the order of their printable characters, as GPT-2's first 256 ids */
    int32_t next = n_specials;
    for (uint32_t cp = 0; cp < 256 + 68; cp++) {
        int b = tok_char_to_byte(cp);
        if (b < 0) continue;
        char *p = malloc(6);
        if (!p) goto nomem;
        owned[next] = p;
        int l = utf8_encode(cp, p);
        p[l] = (char)b; /* the text (one byte) is kept right after the piece */
        pieces[next] = p;
        piece_lens[next] = (uint32_t)l;
        texts[next] = p + l;
        text_lens[next] = 1;
        next++;
    }
    for (int32_t m = 0; m < n_merges; m++, next++) {
        int32_t a = merge_left[m], b = merge_right[m];
        size_t pl = piece_lens[a] + piece_lens[b], tl = text_lens[a] + text_lens[b];
        char *p = malloc(pl + tl);
        if (!p) goto nomem;
        owned[next] = p;
        memcpy(p, pieces[a], piece_lens[a]);
        memcpy(p + piece_lens[a], pieces[b], piece_lens[b]);
        memcpy(p + pl, texts[a], text_lens[a]);
        memcpy(p + pl + text_lens[a], texts[b], text_lens[b]);
        pieces[next] = p;
        piece_lens[next] = (uint32_t)pl;
        texts[next] = p + pl;
        text_lens[next] = (uint32_t)tl;
    }
    t->model = TOK_MODEL_BYTE_LEVEL;
    t->split = TOK_SPLIT_GPT2;
    if ((rc = tok_set_vocab(t, n_ids, pieces, piece_lens, texts, text_lens, flags, err))) goto fail;
    if ((rc = tok_finish(t, err))) goto fail;
    if (tok_pair_map_init(&t->merges, (size_t)n_merges) != RLHF_OK) goto nomem;
    for (int32_t m = 0; m < n_merges; m++)
        if (tok_pair_map_add(&t->merges, merge_left[m], merge_right[m], m, n_specials + 256 + m) != RLHF_OK) goto nomem;
    *out = t;
    t = NULL;
    goto done;
nomem:
    rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory building the trained tokenizer");
fail:
done:
    if (owned)
        for (int32_t i = 0; i < n_ids; i++) free(owned[i]);
    free(owned);
    free(pieces);
    free(texts);
    free(piece_lens);
    free(text_lens);
    free(flags);
    tok_close(&t);
    return rc;
}

int tok_train_bpe(tokenizer **out, const char *const *corpus_paths, int n_paths, int vocab_size,
                  const char *const *specials, int n_specials, tok_progress_fn progress, void *progress_ctx,
                  rlhf_error *err) {
    *out = NULL;
    trainer tr = {0};
    int32_t *merge_left = NULL, *merge_right = NULL;
    char *data = NULL;
    int rc = RLHF_OK;
    if (n_paths < 1) return rlhf_errorf(err, RLHF_ERR_INVALID, "no corpus files to train on");
    if (n_specials < 0 || vocab_size < 256 + n_specials || vocab_size > (1 << 22))
        return rlhf_errorf(err, RLHF_ERR_INVALID, "vocabulary size %d must be between %d (256 bytes + %d specials) and %d",
                           vocab_size, 256 + n_specials, n_specials, 1 << 22);
    for (int k = 0; k < n_specials; k++) {
        if (!specials[k][0]) return rlhf_errorf(err, RLHF_ERR_INVALID, "special token %d is empty", k + 1);
        for (int j = 0; j < k; j++)
            if (strcmp(specials[j], specials[k]) == 0)
                return rlhf_errorf(err, RLHF_ERR_INVALID, "special token '%s' is given twice", specials[k]);
    }
    unsigned char special_first[256] = {0}; /* bytes a special token starts with */
    for (int k = 0; k < n_specials; k++) special_first[(unsigned char)specials[k][0]] = 1;
    long long total = 0, done = 0;
    for (int f = 0; f < n_paths; f++) {
        struct stat st;
        if (stat(corpus_paths[f], &st) == 0) total += (long long)st.st_size;
    }
    for (int f = 0; f < n_paths; f++) {
        size_t len;
        if ((rc = file_read_all(corpus_paths[f], &data, &len, err))) goto fail;
        /* counted in slices so progress moves on big files; a slice ends where every pre-token
         * ends whatever follows: after a newline followed by a letter or digit (the newline is
         * a piece of its own, the letter starts the next) */
        for (size_t pos = 0; pos < len;) {
            size_t end = pos + ((size_t)4 << 20) < len ? pos + ((size_t)4 << 20) : len;
            while (end < len && !(data[end - 1] == '\n' && ((data[end] >= 'a' && data[end] <= 'z') ||
                                                           (data[end] >= 'A' && data[end] <= 'Z') ||
                                                           (data[end] >= '0' && data[end] <= '9'))))
                end++;
            if (!count_text(&tr, data + pos, end - pos, specials, n_specials, special_first)) goto nomem;
            done += (long long)(end - pos);
            pos = end;
            if (progress && progress(progress_ctx, "count", done, total)) {
                rc = rlhf_errorf(err, RLHF_ERR_INTERRUPTED, "training stopped while reading %s", corpus_paths[f]);
                goto fail;
            }
        }
        free(data);
        data = NULL;
    }

    /* symbols: byte b is id n_specials + (position of b's character in GPT-2's order) */
    int32_t byte_id[256];
    {
        int32_t next = n_specials;
        for (uint32_t cp = 0; cp < 256 + 68; cp++) {
            int b = tok_char_to_byte(cp);
            if (b >= 0) byte_id[b] = next++;
        }
    }
    size_t n_sym = tr.keys_used;
    tr.sym = malloc((n_sym + 1) * sizeof *tr.sym);
    tr.sym_off = malloc(((size_t)tr.n_words + 1) * sizeof *tr.sym_off);
    tr.sym_len = malloc(((size_t)tr.n_words + 1) * sizeof *tr.sym_len);
    tr.stamp = malloc(((size_t)tr.n_words + 1) * sizeof *tr.stamp);
    if (!tr.sym || !tr.sym_off || !tr.sym_len || !tr.stamp) goto nomem;
    for (int32_t w = 0; w < tr.n_words; w++) {
        tr.sym_off[w] = tr.key_off[w];
        tr.sym_len[w] = tr.key_len[w];
        tr.stamp[w] = -1;
        for (uint32_t i = 0; i < tr.key_len[w]; i++)
            tr.sym[tr.key_off[w] + i] = byte_id[(unsigned char)tr.keys[tr.key_off[w] + i]];
    }
    if (tok_pair_map_init(&tr.pair_index, 1 << 16) != RLHF_OK) goto nomem;
    for (int32_t w = 0; w < tr.n_words; w++) {
        const int32_t *s = tr.sym + tr.sym_off[w];
        for (uint32_t i = 0; i + 1 < tr.sym_len[w]; i++)
            if (!pair_add(&tr, s[i], s[i + 1], tr.count[w], w)) goto nomem;
    }
    for (int32_t p = 0; p < tr.n_pairs; p++)
        if (tr.pairs[p].count > 0 && !heap_push(&tr, (heap_item){tr.pairs[p].count, p})) goto nomem;

    int32_t n_merges_max = vocab_size - 256 - n_specials, n_merges = 0;
    merge_left = malloc(((size_t)n_merges_max + 1) * sizeof *merge_left);
    merge_right = malloc(((size_t)n_merges_max + 1) * sizeof *merge_right);
    if (!merge_left || !merge_right) goto nomem;
    while (n_merges < n_merges_max && tr.heap_n > 0) {
        heap_item top = heap_pop(&tr);
        train_pair *pr = &tr.pairs[top.pair];
        if (pr->count != top.count) {
            if (pr->count > 0 && !heap_push(&tr, (heap_item){pr->count, top.pair})) goto nomem;
            continue;
        }
        if (pr->count <= 0) continue;
        int32_t left = pr->left, right = pr->right, id = n_specials + 256 + n_merges, step = n_merges;
        merge_left[n_merges] = left;
        merge_right[n_merges] = right;
        tr.n_touched = 0;
        /* the list may grow while it is walked (a word holding the pair twice), so index it */
        for (int32_t k = 0; k < tr.pairs[top.pair].n_words; k++) {
            int32_t w = tr.pairs[top.pair].words[k];
            if (tr.stamp[w] == step) continue;
            tr.stamp[w] = step;
            if (!merge_word(&tr, w, left, right, id, step)) goto nomem;
        }
        pr = &tr.pairs[top.pair];
        free(pr->words);
        pr->words = NULL;
        pr->n_words = pr->cap_words = 0;
        for (size_t k = 0; k < tr.n_touched; k++) {
            int32_t p = tr.touched[k];
            if (tr.pairs[p].count > 0 && !heap_push(&tr, (heap_item){tr.pairs[p].count, p})) goto nomem;
        }
        n_merges++;
        if (progress && (n_merges % 64 == 0 || n_merges == n_merges_max) &&
            progress(progress_ctx, "merge", n_merges, n_merges_max)) {
            rc = rlhf_errorf(err, RLHF_ERR_INTERRUPTED, "training stopped after %d merges", (int)n_merges);
            goto fail;
        }
    }
    rc = build_tokenizer(out, merge_left, merge_right, n_merges, specials, n_specials, err);
    goto done;
nomem:
    rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory while training");
fail:
done:
    free(data);
    free(merge_left);
    free(merge_right);
    trainer_free(&tr);
    return rc;
}
