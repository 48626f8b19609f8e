/* tok_bpe.c — the BPE merge loop, its hash tables, and the per-thread encoder scratch.
 *
 * Merges are looked up by pairs of ids in one open-addressing table, so a merge step is a
 * multiply, a probe and a compare. A word's symbols are merged lowest rank first, leftmost among
 * equal ranks: the order of Hugging Face's BPE (rank, position heap), of tiktoken (leftmost
 * minimum) and, with ranks made from scores, of llama2.c (best score, first found).
 *
 * Each thread that encodes gets its own scratch (a pthread key, freed when the thread exits) so
 * that a shared tokenizer stays read-only and tok_encode needs no lock: symbol arrays, the heap
 * for long words, a buffer for normalised text, PCRE2 match data, and a cache of recently
 * encoded words, which is dropped whenever the thread switches to another tokenizer. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "src/tok/tok_internal.h"

uint32_t tok_hash_bytes(const void *data, size_t len) {
    const unsigned char *p = data;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)len;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        p += 8;
        len -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, p, len);
    h = (h ^ v) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return (uint32_t)h;
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* ---- pair -> merge ---- */

int tok_pair_map_init(tok_pair_map *m, size_t expected) {
    memset(m, 0, sizeof *m);
    m->cap = pow2_at_least(expected * 2 + 1);
    m->keys = malloc(m->cap * sizeof *m->keys);
    m->rank = malloc(m->cap * sizeof *m->rank);
    m->result = malloc(m->cap * sizeof *m->result);
    if (!m->keys || !m->rank || !m->result) {
        tok_pair_map_free(m);
        return RLHF_ERR_NOMEM;
    }
    memset(m->keys, 0xFF, m->cap * sizeof *m->keys);
    return RLHF_OK;
}

void tok_pair_map_free(tok_pair_map *m) {
    free(m->keys);
    free(m->rank);
    free(m->result);
    memset(m, 0, sizeof *m);
}

static int pair_map_grow(tok_pair_map *m) {
    tok_pair_map bigger;
    if (tok_pair_map_init(&bigger, m->cap) != RLHF_OK) return RLHF_ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i] != UINT64_MAX)
            tok_pair_map_add(&bigger, (int32_t)(m->keys[i] >> 32), (int32_t)(uint32_t)m->keys[i], m->rank[i],
                             m->result[i]);
    tok_pair_map_free(m);
    *m = bigger;
    return RLHF_OK;
}

int tok_pair_map_add(tok_pair_map *m, int32_t left, int32_t right, int32_t rank, int32_t result) {
    if ((m->n + 1) * 2 > m->cap && pair_map_grow(m) != RLHF_OK) return RLHF_ERR_NOMEM;
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    size_t mask = m->cap - 1, i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
    while (m->keys[i] != UINT64_MAX) {
        if (m->keys[i] == key) return RLHF_OK;
        i = (i + 1) & mask;
    }
    m->keys[i] = key;
    m->rank[i] = rank;
    m->result[i] = result;
    m->n++;
    return RLHF_OK;
}

/* ---- text -> id ---- */

int tok_text_map_init(tok_text_map *m, size_t expected) {
    memset(m, 0, sizeof *m);
    m->cap = pow2_at_least(expected * 2 + 1);
    m->slots = malloc(m->cap * sizeof *m->slots);
    m->hashes = malloc(m->cap * sizeof *m->hashes);
    if (!m->slots || !m->hashes) {
        tok_text_map_free(m);
        return RLHF_ERR_NOMEM;
    }
    memset(m->slots, 0xFF, m->cap * sizeof *m->slots);
    return RLHF_OK;
}

void tok_text_map_free(tok_text_map *m) {
    free(m->slots);
    free(m->hashes);
    memset(m, 0, sizeof *m);
}

int tok_text_map_add(tok_text_map *m, const tokenizer *t, int32_t id) {
    const char *s = tok_text(t, id);
    size_t len = tok_text_len(t, id);
    if ((m->n + 1) * 2 > m->cap) {
        /* rebuilt from the ids it holds: the strings live in the tokenizer */
        tok_text_map bigger;
        if (tok_text_map_init(&bigger, m->cap) != RLHF_OK) return RLHF_ERR_NOMEM;
        for (size_t i = 0; i < m->cap; i++)
            if (m->slots[i] >= 0) tok_text_map_add(&bigger, t, m->slots[i]);
        tok_text_map_free(m);
        *m = bigger;
    }
    uint32_t h = tok_hash_bytes(s, len);
    size_t mask = m->cap - 1, i = h & mask;
    while (m->slots[i] >= 0) {
        int32_t other = m->slots[i];
        if (m->hashes[i] == h && tok_text_len(t, other) == len && memcmp(tok_text(t, other), s, len) == 0)
            return RLHF_OK;
        i = (i + 1) & mask;
    }
    m->slots[i] = id;
    m->hashes[i] = h;
    m->n++;
    return RLHF_OK;
}

int32_t tok_text_map_find(const tok_text_map *m, const tokenizer *t, const char *s, size_t len) {
    if (!m->cap) return -1;
    uint32_t h = tok_hash_bytes(s, len);
    size_t mask = m->cap - 1, i = h & mask;
    for (;;) {
        int32_t id = m->slots[i];
        if (id < 0) return -1;
        if (m->hashes[i] == h && tok_text_len(t, id) == len && memcmp(tok_text(t, id), s, len) == 0) return id;
        i = (i + 1) & mask;
    }
}

/* ---- per-thread scratch ---- */

typedef struct {
    int32_t rank, pos, left, right, result;
} heap_entry;

typedef struct {
    uint32_t hash;
    uint32_t key_off;
    uint32_t ids_off;
    uint16_t key_len; /* 0 = empty slot */
    uint16_t n_ids;
} cache_entry;

/* Sizes of the word cache: big enough for the working vocabulary of a long text, small enough
 * that clearing it when full (the whole eviction policy) is cheap. */
#define CACHE_SLOTS (1u << 18)
#define CACHE_MAX_ENTRIES (CACHE_SLOTS / 2)
#define CACHE_KEY_BYTES (1u << 22)
#define CACHE_IDS (1u << 20)

struct tok_workspace {
    uint64_t owner; /* serial of the tokenizer whose words are cached */
    int32_t *sym;
    size_t sym_cap;
    int32_t *a, *b; /* (aux_cap) ranks and results (short words) or prev and next (long words) */
    size_t aux_cap;
    heap_entry *heap;
    size_t heap_cap;
    char *buf;
    size_t buf_cap;
    pretokenizer_match_state match;
    cache_entry *cache; /* (CACHE_SLOTS) allocated on first use */
    size_t cache_n;
    char *cache_keys;
    size_t keys_used;
    int32_t *cache_ids;
    size_t ids_used;
};

static pthread_key_t g_ws_key;
static pthread_once_t g_ws_once = PTHREAD_ONCE_INIT;
static int g_ws_key_ok;

static void workspace_destroy(void *p) {
    tok_workspace *ws = p;
    if (!ws) return;
    free(ws->sym);
    free(ws->a);
    free(ws->b);
    free(ws->heap);
    free(ws->buf);
    pretokenizer_match_state_free(&ws->match);
    free(ws->cache);
    free(ws->cache_keys);
    free(ws->cache_ids);
    free(ws);
}

static void workspace_key_create(void) { g_ws_key_ok = pthread_key_create(&g_ws_key, workspace_destroy) == 0; }

static void cache_clear(tok_workspace *ws) {
    if (ws->cache && ws->cache_n) memset(ws->cache, 0, CACHE_SLOTS * sizeof *ws->cache);
    ws->cache_n = ws->keys_used = ws->ids_used = 0;
}

tok_workspace *tok_workspace_get(const tokenizer *t) {
    pthread_once(&g_ws_once, workspace_key_create);
    if (!g_ws_key_ok) return NULL;
    tok_workspace *ws = pthread_getspecific(g_ws_key);
    if (!ws) {
        ws = calloc(1, sizeof *ws);
        if (!ws) return NULL;
        if (pthread_setspecific(g_ws_key, ws) != 0) {
            free(ws);
            return NULL;
        }
    }
    if (ws->owner != t->serial) {
        cache_clear(ws);
        ws->owner = t->serial;
    }
    return ws;
}

void tok_workspace_release(void) {
    pthread_once(&g_ws_once, workspace_key_create);
    if (!g_ws_key_ok) return;
    tok_workspace *ws = pthread_getspecific(g_ws_key);
    if (ws) {
        pthread_setspecific(g_ws_key, NULL);
        workspace_destroy(ws);
    }
}

pretokenizer_match_state *tok_workspace_match_state(tok_workspace *ws) { return &ws->match; }

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

char *tok_workspace_buffer(tok_workspace *ws, size_t need) {
    return grow((void **)&ws->buf, &ws->buf_cap, need, 1) ? ws->buf : NULL;
}

int32_t *tok_workspace_symbols(tok_workspace *ws, size_t n) {
    return grow((void **)&ws->sym, &ws->sym_cap, n, sizeof *ws->sym) ? ws->sym : NULL;
}

static int workspace_aux(tok_workspace *ws, size_t n) {
    if (n <= ws->aux_cap) return 1;
    size_t cap_a = ws->aux_cap, cap_b = ws->aux_cap;
    if (!grow((void **)&ws->a, &cap_a, n, sizeof *ws->a)) return 0;
    if (!grow((void **)&ws->b, &cap_b, n, sizeof *ws->b)) return 0;
    ws->aux_cap = cap_a < cap_b ? cap_a : cap_b;
    return 1;
}

/* ---- the merge loop ---- */

/* Words up to this many symbols use the quadratic scan: it touches a few cache lines and does
 * no heap bookkeeping, which wins for the short pre-tokens of ordinary text. */
#define SHORT_WORD 128

static size_t merge_short(const tokenizer *t, int32_t *sym, size_t n, int32_t *rank, int32_t *result) {
    for (size_t i = 0; i + 1 < n; i++)
        if (!tok_pair_map_find(&t->merges, sym[i], sym[i + 1], &rank[i], &result[i])) rank[i] = INT32_MAX;
    while (n > 1) {
        size_t best = 0;
        int32_t best_rank = rank[0];
        for (size_t i = 1; i + 1 < n; i++)
            if (rank[i] < best_rank) {
                best_rank = rank[i];
                best = i;
            }
        if (best_rank == INT32_MAX) break;
        sym[best] = result[best];
        /* remove symbol best+1 and the pair that started at it */
        memmove(sym + best + 1, sym + best + 2, (n - best - 2) * sizeof *sym);
        memmove(rank + best + 1, rank + best + 2, (n - best - 2) * sizeof *rank);
        memmove(result + best + 1, result + best + 2, (n - best - 2) * sizeof *result);
        n--;
        if (best > 0 && !tok_pair_map_find(&t->merges, sym[best - 1], sym[best], &rank[best - 1], &result[best - 1]))
            rank[best - 1] = INT32_MAX;
        if (best + 1 < n) {
            if (!tok_pair_map_find(&t->merges, sym[best], sym[best + 1], &rank[best], &result[best]))
                rank[best] = INT32_MAX;
        } else {
            rank[best] = INT32_MAX;
        }
    }
    return n;
}

static inline int heap_less(const heap_entry *x, const heap_entry *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_sift_down(heap_entry *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && heap_less(&h[l], &h[m])) m = l;
        if (r < n && heap_less(&h[r], &h[m])) m = r;
        if (m == i) return;
        heap_entry tmp = h[i];
        h[i] = h[m];
        h[m] = tmp;
        i = m;
    }
}

static void heap_push(heap_entry *h, size_t *n, heap_entry e) {
    size_t i = (*n)++;
    h[i] = e;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&h[i], &h[p])) break;
        heap_entry tmp = h[i];
        h[i] = h[p];
        h[p] = tmp;
        i = p;
    }
}

static size_t merge_long(const tokenizer *t, tok_workspace *ws, int32_t *sym, size_t n) {
    int32_t *prev = ws->a, *next = ws->b;
    heap_entry *heap = ws->heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        heap_entry e = {0, (int32_t)i, sym[i], sym[i + 1], 0};
        if (tok_pair_map_find(&t->merges, sym[i], sym[i + 1], &e.rank, &e.result)) heap[hn++] = e;
    }
    for (size_t i = hn / 2; i-- > 0;) heap_sift_down(heap, hn, i);
    while (hn) {
        heap_entry e = heap[0];
        heap[0] = heap[--hn];
        heap_sift_down(heap, hn, 0);
        int32_t i = e.pos, j = next[i];
        if (sym[i] != e.left || j < 0 || sym[j] != e.right) continue; /* stale */
        sym[i] = e.result;
        sym[j] = -1;
        next[i] = next[j];
        if (next[j] >= 0) prev[next[j]] = i;
        heap_entry f;
        if (prev[i] >= 0) {
            int32_t p = prev[i];
            f = (heap_entry){0, p, sym[p], sym[i], 0};
            if (tok_pair_map_find(&t->merges, sym[p], sym[i], &f.rank, &f.result)) heap_push(heap, &hn, f);
        }
        if (next[i] >= 0) {
            int32_t q = next[i];
            f = (heap_entry){0, i, sym[i], sym[q], 0};
            if (tok_pair_map_find(&t->merges, sym[i], sym[q], &f.rank, &f.result)) heap_push(heap, &hn, f);
        }
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (sym[i] >= 0) sym[m++] = sym[i];
    return m;
}

size_t tok_bpe_merge(const tokenizer *t, tok_workspace *ws, int32_t *sym, size_t n, int force_heap) {
    if (n < 2 || t->merges.n == 0) return n;
    if (!workspace_aux(ws, n)) return (size_t)-1;
    if (n <= SHORT_WORD && !force_heap) return merge_short(t, sym, n, ws->a, ws->b);
    /* every merge pushes at most two entries on top of the initial n - 1 */
    if (!grow((void **)&ws->heap, &ws->heap_cap, 3 * n, sizeof *ws->heap)) return (size_t)-1;
    return merge_long(t, ws, sym, n);
}

/* ---- word cache ---- */

int tok_cache_find(tok_workspace *ws, const char *key, size_t len, const int32_t **ids, size_t *n) {
    if (!ws->cache || len == 0 || len > 0xFFFF) return 0;
    uint32_t h = tok_hash_bytes(key, len);
    size_t i = h & (CACHE_SLOTS - 1);
    for (;;) {
        const cache_entry *e = &ws->cache[i];
        if (e->key_len == 0) return 0;
        if (e->hash == h && e->key_len == len && memcmp(ws->cache_keys + e->key_off, key, len) == 0) {
            *ids = ws->cache_ids + e->ids_off;
            *n = e->n_ids;
            return 1;
        }
        i = (i + 1) & (CACHE_SLOTS - 1);
    }
}

void tok_cache_put(tok_workspace *ws, const char *key, size_t len, const int32_t *ids, size_t n) {
    if (len == 0 || len > 256 || n > 0xFFFF) return;
    if (!ws->cache) {
        ws->cache = calloc(CACHE_SLOTS, sizeof *ws->cache);
        ws->cache_keys = malloc(CACHE_KEY_BYTES);
        ws->cache_ids = malloc(CACHE_IDS * sizeof *ws->cache_ids);
        if (!ws->cache || !ws->cache_keys || !ws->cache_ids) {
            /* a cache is an optimisation: without memory for it, encode without one */
            free(ws->cache);
            free(ws->cache_keys);
            free(ws->cache_ids);
            ws->cache = NULL;
            ws->cache_keys = NULL;
            ws->cache_ids = NULL;
            return;
        }
    }
    if (ws->cache_n >= CACHE_MAX_ENTRIES || ws->keys_used + len > CACHE_KEY_BYTES || ws->ids_used + n > CACHE_IDS)
        cache_clear(ws);
    uint32_t h = tok_hash_bytes(key, len);
    size_t i = h & (CACHE_SLOTS - 1);
    while (ws->cache[i].key_len != 0) i = (i + 1) & (CACHE_SLOTS - 1);
    cache_entry *e = &ws->cache[i];
    e->hash = h;
    e->key_off = (uint32_t)ws->keys_used;
    e->key_len = (uint16_t)len;
    e->ids_off = (uint32_t)ws->ids_used;
    e->n_ids = (uint16_t)n;
    memcpy(ws->cache_keys + ws->keys_used, key, len);
    memcpy(ws->cache_ids + ws->ids_used, ids, n * sizeof *ids);
    ws->keys_used += len;
    ws->ids_used += n;
    ws->cache_n++;
}

int tok_ids_reserve(tok_ids *ids, size_t need) {
    if (need <= ids->cap) return RLHF_OK;
    size_t c = ids->cap ? ids->cap : 256;
    while (c < need) c *= 2;
    int32_t *p = realloc(ids->ids, c * sizeof *p);
    if (!p) return RLHF_ERR_NOMEM;
    ids->ids = p;
    ids->cap = c;
    return RLHF_OK;
}

void tok_ids_free(tok_ids *ids) {
    if (!ids) return;
    free(ids->ids);
    ids->ids = NULL;
    ids->n = ids->cap = 0;
}
