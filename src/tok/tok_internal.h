/* tok_internal.h — the tokenizer struct and the pieces shared by the tokenizer's source files
 * (engine-internal: other modules use src/tok/tokenizer.h).
 *
 *   tokenizer.c        lifecycle, accessors, special-token matching, encode, decode, streaming
 *   tok_file.c         reading tokenizer.json / encoder.json+vocab.bpe / tokenizer.bin, writing
 *                      tokenizer.json
 *   tok_bpe.c          hash tables (text -> id, pair -> merge), the merge loop, per-thread scratch
 *   pretokenizer.c  GPT-2 scanner and PCRE2 splitter
 *   tok_train.c        learning a byte-level BPE vocabulary
 *
 * Every id has two strings: its *piece*, the vocabulary string as the file spells it ("Ġthe",
 * "▁the", "<0x0A>"), and its *text*, the bytes it stands for (" the", " the", "\n"). Encoding works
 * on texts only: byte-level BPE starts from the 256 byte ids and SentencePiece-style BPE from the
 * ids of single characters, and merges are keyed by pairs of ids, so no string is rebuilt while
 * encoding. */
#ifndef RLHF_TOK_INTERNAL_H
#define RLHF_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"
#include "src/tok/pretokenizer.h"
#include "src/tok/tokenizer.h"

enum tok_model {
    TOK_MODEL_BYTE_LEVEL = 0,    /* GPT-2 family */
    TOK_MODEL_SENTENCEPIECE = 1, /* Llama 1/2 family: marker, dummy prefix, byte fallback */
};

enum tok_split {
    TOK_SPLIT_NONE = 0,  /* the whole segment is one word */
    TOK_SPLIT_GPT2 = 1,  /* hand-written GPT-2 scanner */
    TOK_SPLIT_REGEX = 2, /* PCRE2 with the file's pattern */
    TOK_SPLIT_SPACE = 3, /* Metaspace split: a word starts at each space (marker) */
};

enum tok_id_flag {
    TOK_ID_PRESENT = 1u << 0, /* the id exists (vocabularies may have holes) */
    TOK_ID_ADDED = 1u << 1,   /* an added token: matched in the text before pre-tokenization */
    TOK_ID_SPECIAL = 1u << 2, /* a special token: matched only with TOK_ENCODE_ALLOW_SPECIAL */
    TOK_ID_BYTE = 1u << 3,    /* a SentencePiece byte-fallback token <0xNN> */
};

/* Open-addressing hash table from a pair of ids to the merge that joins them. */
typedef struct {
    uint64_t *keys;   /* (cap) (left << 32) | right, or UINT64_MAX for an empty slot */
    int32_t *rank;    /* (cap) lower merges first */
    int32_t *result;  /* (cap) id of the merged token */
    size_t cap, n;    /* cap is a power of two */
} tok_pair_map;

/* Open-addressing hash table from a byte string to an id; the strings live in the tokenizer. */
typedef struct {
    int32_t *slots;   /* (cap) id or -1 */
    uint32_t *hashes; /* (cap) hash of the slot's string, to skip most compares */
    size_t cap, n;
} tok_text_map;

/* An added token, kept sorted by first byte then length (longest first) for matching. */
typedef struct {
    int32_t id;
    uint32_t len;
    const char *text; /* points into the tokenizer's text blob */
} tok_added;

struct tokenizer {
    int model;   /* enum tok_model */
    int split;   /* enum tok_split */
    uint64_t serial; /* unique per tokenizer in this process: per-thread caches check it */
    int32_t n_ids;

    char *piece_blob;    /* every piece, NUL-terminated, back to back */
    uint32_t *piece_off; /* (n_ids) offset of each piece in piece_blob */
    char *text_blob;     /* every text, NUL-terminated, back to back */
    uint32_t *text_off;  /* (n_ids + 1) text i is text_blob[text_off[i] .. text_off[i+1] - 1) */
    uint8_t *flags;      /* (n_ids) enum tok_id_flag */
    float *scores;       /* (n_ids) llama2.c scores, or NULL */

    tok_text_map by_text;  /* text -> id over the model's own tokens (no added, no byte-fallback) */
    tok_pair_map merges;   /* (left, right) -> rank, result */
    int32_t byte_id[256];  /* id standing for each single byte, -1 if none */

    tok_added *added;      /* (n_added) sorted by first byte, then longest first */
    int n_added;
    int added_begin[257];  /* added tokens starting with byte b: added[added_begin[b] .. added_begin[b+1]) */
    int has_plain_added;   /* some added token is not special (matched even without the flag) */

    int32_t bos, eos, pad, unk; /* -1 if none */

    int ignore_merges;     /* a pre-token that is itself a token becomes that id (tiktoken, HF) */
    int add_prefix_space;  /* byte-level: a segment not starting with ' ' gets one */
    int fuse_unk;          /* consecutive unknown characters become one unk id */
    int sp_add_prefix;     /* SentencePiece: a segment gets a dummy-prefix space */
    int sp_prefix_first;   /* ... only the first segment of the text (Metaspace "first") */
    int sp_marker_input;   /* an input "▁" is read as a space (HF Replace/Metaspace normalisers) */
    int sp_byte_fallback;  /* characters missing from the vocabulary become <0xNN> ids */
    int sp_strip_space;    /* decoding drops the dummy-prefix space at the start */
    int sp_marker_space;   /* the vocabulary spells the marker as ' ' (llama2.c tokenizer.bin) */
    int sp_words;          /* no token has a space after a non-space: a text can be cut before
                              every space that follows a non-space without changing the result */
    char *regex_pattern;   /* the Split pattern of the file (TOK_SPLIT_REGEX), owned */
    pretokenizer_regex regex;
    /* while loading only: per-id tok_piece_kind from the container (GGUF token_type), or NULL */
    const uint8_t *load_kinds;
    int32_t n_load_kinds;
};

/* --- tok_bpe.c --- */

uint32_t tok_hash_bytes(const void *data, size_t len);

int tok_pair_map_init(tok_pair_map *m, size_t expected);
void tok_pair_map_free(tok_pair_map *m);
/* Adds a merge unless the pair already has one (the first, lowest-rank entry wins). */
int tok_pair_map_add(tok_pair_map *m, int32_t left, int32_t right, int32_t rank, int32_t result);
/* Looks a pair up: 1 and sets *rank and *result if present, else 0. */
static inline int tok_pair_map_find(const tok_pair_map *m, int32_t left, int32_t right, int32_t *rank,
                                    int32_t *result) {
    if (!m->cap) return 0;
    uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    size_t mask = m->cap - 1, i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
    for (;;) {
        uint64_t k = m->keys[i];
        if (k == key) {
            *rank = m->rank[i];
            *result = m->result[i];
            return 1;
        }
        if (k == UINT64_MAX) return 0;
        i = (i + 1) & mask;
    }
}

int tok_text_map_init(tok_text_map *m, size_t expected);
void tok_text_map_free(tok_text_map *m);
/* Adds id under its text in t unless that text is already there (the lowest id wins). */
int tok_text_map_add(tok_text_map *m, const tokenizer *t, int32_t id);
/* Id whose text is s[0..len), or -1. */
int32_t tok_text_map_find(const tok_text_map *m, const tokenizer *t, const char *s, size_t len);

static inline const char *tok_text(const tokenizer *t, int32_t id) { return t->text_blob + t->text_off[id]; }
static inline size_t tok_text_len(const tokenizer *t, int32_t id) {
    return t->text_off[id + 1] - t->text_off[id] - 1;
}

/* Per-thread scratch for encoding: symbol arrays, a heap for long words, the word cache and the
 * PCRE2 match state. Owned by the thread (see tok_workspace_get). */
typedef struct tok_workspace tok_workspace;

/* The calling thread's scratch, cleared of anything cached for another tokenizer; NULL if out
 * of memory. */
tok_workspace *tok_workspace_get(const tokenizer *t);
/* Frees the calling thread's scratch (tok_close calls it so single-threaded programs end clean). */
void tok_workspace_release(void);
pretokenizer_match_state *tok_workspace_match_state(tok_workspace *ws);
/* A byte buffer of at least `need` bytes owned by the workspace; NULL if out of memory. */
char *tok_workspace_buffer(tok_workspace *ws, size_t need);

/* The merge loop of BPE on one word, in place: merges the lowest-ranked adjacent pair (leftmost
 * among equals) until none applies; returns the new length. Short words use a quadratic scan,
 * long ones (a whole SentencePiece text, a long run of spaces) a heap over a linked list;
 * force_heap selects the latter so a test can check that both agree. */
size_t tok_bpe_merge(const tokenizer *t, tok_workspace *ws, int32_t *sym, size_t n, int force_heap);
/* Scratch of at least n symbols (grows the workspace); NULL if out of memory. */
int32_t *tok_workspace_symbols(tok_workspace *ws, size_t n);

/* The per-thread word cache: ids of pre-tokens already encoded by the workspace's tokenizer.
 * find returns 1 and borrows the ids (valid until the next put), put may silently drop the entry. */
int tok_cache_find(tok_workspace *ws, const char *key, size_t len, const int32_t **ids, size_t *n);
void tok_cache_put(tok_workspace *ws, const char *key, size_t len, const int32_t *ids, size_t n);

int tok_ids_reserve(tok_ids *ids, size_t need);

/* --- tokenizer.c --- */

/* Allocates an empty tokenizer with a fresh serial and no ids. */
tokenizer *tok_alloc(void);
/* Builds the id tables from parallel arrays of n_ids pieces/texts (NULL piece = unused id):
 * copies them into the blobs and fills flags and byte_id for byte-level vocabularies. */
int tok_set_vocab(tokenizer *t, int32_t n_ids, const char *const *pieces, const uint32_t *piece_lens,
                  const char *const *texts, const uint32_t *text_lens, const uint8_t *flags,
                  rlhf_error *err);
/* After vocab and flags are set: builds by_text, byte_id (SentencePiece), the added-token index
 * and the BOS/EOS/PAD/UNK guesses from token names (callers may override afterwards). */
int tok_finish(tokenizer *t, rlhf_error *err);

/* GPT-2's byte <-> printable character table. */
uint32_t tok_byte_to_char(unsigned byte);
/* Byte a byte-level character stands for, -1 if the character is not in the table. */
int tok_char_to_byte(uint32_t cp);

#endif
