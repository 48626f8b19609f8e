/* tokenizer.h — text to token ids and back, exactly as the reference tokenizers do it.
 *
 * One opaque handle covers the two BPE families in use:
 *  - byte-level BPE (GPT-2, Llama 3, Qwen...): text is split into pre-tokens (GPT-2's pattern by
 *    a hand-written scanner, any other pattern from the file by PCRE2), each pre-token's bytes
 *    start as 256 byte tokens and are merged by merge rank;
 *  - SentencePiece-style BPE (Llama 1/2, Mistral): spaces become the "▁" marker, a dummy prefix
 *    is added, characters missing from the vocabulary fall back to <0xNN> byte tokens, and
 *    merges apply by rank (Hugging Face merges list) or by score (llama2.c tokenizer.bin).
 * Special tokens (BOS, EOS, chat markers) become single ids only when the caller allows it.
 *
 * Files read: a Hugging Face tokenizer.json (model BPE; pre-tokenizers ByteLevel, Split with a
 * regex, Metaspace, or a Sequence of those; normalizers Prepend/Replace), the older GPT-2 pair
 * encoder.json + vocab.bpe (encoded as OpenAI's tiktoken does), and llama2.c's tokenizer.bin
 * (int32 max_token_length, then per token: float32 score, int32 length, bytes). BOS/EOS/PAD come
 * from tokenizer_config.json beside the file when present, else from well-known token names.
 *
 * Threads: a loaded tokenizer is read-only; tok_encode, tok_decode and the accessors may run
 * concurrently on the same tokenizer from any number of threads. The encoder keeps a scratch
 * area and a word cache per thread (freed when the thread exits, or by tok_close in the calling
 * thread), so encoding allocates nothing once the caller's tok_ids and that scratch have grown. */
#ifndef RLHF_TOKENIZER_H
#define RLHF_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"

typedef struct tokenizer tokenizer;

/* A caller-owned growable array of token ids; zero-initialise it ({0}) and reuse it across calls
 * so encoding does not allocate once it has grown. Free with tok_ids_free. */
typedef struct {
    int32_t *ids; /* (cap) the first n are valid */
    size_t n, cap;
} tok_ids;

/* Frees the array and zeroes the struct; safe on a zeroed struct and safe twice. */
void tok_ids_free(tok_ids *ids);

/* Loads a tokenizer from `path`: a tokenizer.json file, a directory holding tokenizer.json (a
 * model directory), a directory holding encoder.json + vocab.bpe (or the path of encoder.json),
 * or a llama2.c tokenizer.bin. On success *out is a new handle the caller closes with tok_close;
 * on error *out is NULL and err names the file (and line, for malformed JSON). */
int tok_load(tokenizer **out, const char *path, rlhf_error *err);

/* The built-in byte tokenizer: 256 ids, id b is byte b, no merges, no special tokens. For tests
 * and for pre-training without a vocabulary; tok_save writes it as a valid ByteLevel BPE file. */
int tok_new_bytes(tokenizer **out, rlhf_error *err);
/* A tokenizer from bytes in memory: the text of a tokenizer.json or the contents of a llama2.c
 * tokenizer.bin (as tok_load reads them; a GPT-2 encoder.json needs its vocab.bpe and is not
 * accepted here). `config_json` (may be NULL) is tokenizer_config.json text naming the BOS/EOS/
 * PAD tokens; `name` names the source in messages. Same ownership and errors as tok_load. */
int tok_load_buffer(tokenizer **out, const char *name, const void *data, size_t len, const char *config_json,
                    rlhf_error *err);

/* What a container says a piece is (GGUF's tokenizer.ggml.token_type, mapped). */
enum tok_piece_kind {
    TOK_PIECE_NORMAL = 0,
    TOK_PIECE_CONTROL = 1, /* a control token (<s>, <|im_start|>): special, matched in text only
                              when special tokens are allowed, decoded as its name */
    TOK_PIECE_USER = 2,    /* a user-defined piece: matched whole in text before the model's split */
};
/* tok_load_buffer for a llama2.c-layout buffer whose ids carry kinds (uint8_t enum
 * tok_piece_kind, n_kinds of them; ids beyond are NORMAL). */
int tok_load_buffer_kinds(tokenizer **out, const char *name, const void *data, size_t len, const char *config_json,
                          const uint8_t *kinds, int32_t n_kinds, rlhf_error *err);

/* Frees the tokenizer (and the calling thread's encoder scratch) and sets *t to NULL; safe on
 * NULL and on a pointer to NULL. */
void tok_close(tokenizer **t);

/* Writes the tokenizer as a Hugging Face tokenizer.json at `path`, atomically (temp file, fsync,
 * rename). Byte-level tokenizers are written with ByteLevel pre-tokenizer/decoder (or the Split
 * regex they were loaded with), SentencePiece-style ones with the Prepend/Replace normalizer and
 * byte fallback; a llama2.c tokenizer's scores become a merges list ordered by score. */
int tok_save(const tokenizer *t, const char *path, rlhf_error *err);

enum tok_encode_flag {
    TOK_ENCODE_ALLOW_SPECIAL = 1u << 0, /* special tokens written in the text become their one id;
                                           without it "<|endoftext|>" is encoded as plain text */
    TOK_ENCODE_ADD_BOS = 1u << 1,       /* start with the BOS id (error if the tokenizer has none) */
    TOK_ENCODE_APPEND = 1u << 2,        /* append to out instead of replacing its contents */
};

/* Encodes text[0..len) (any bytes: invalid UTF-8 and NULs are encoded as bytes where the
 * vocabulary has byte tokens) into out->ids[0..out->n). `flags` is a set of tok_encode_flag.
 * Without TOK_ENCODE_APPEND out->n is reset first. On error out->n is unspecified. */
int tok_encode(const tokenizer *t, const char *text, size_t len, unsigned flags, tok_ids *out,
               rlhf_error *err);

/* Decodes ids[0..n) to text: every id's bytes (special tokens as their text), then invalid UTF-8
 * is replaced by U+FFFD. SentencePiece-style tokenizers drop the dummy-prefix space at the start
 * and right after BOS. On success *text is a NUL-terminated buffer the caller frees with free()
 * and *len its length without the NUL; an id outside [0, tok_vocab_size) is RLHF_ERR_INVALID. */
int tok_decode(const tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len,
               rlhf_error *err);

/* Streaming decoder for token-by-token output: each push returns only complete UTF-8 (a
 * character split across tokens waits for its last byte; impossible sequences come out as
 * U+FFFD), so what it returns can be printed at once. Concatenating every push and the flush
 * gives exactly tok_decode of the same ids. Storage the caller owns: init, push..., flush, free. */
typedef struct {
    const tokenizer *tok;   /* borrowed; must outlive the stream */
    unsigned char pending[4]; /* start of a character still waiting for bytes */
    int n_pending;
    int at_start;           /* next token begins the text (dummy-prefix space is dropped) */
    char *out;              /* (out_cap) text returned by the last push/flush, owned */
    size_t out_cap;
} tok_stream;

enum tok_stream_flag {
    TOK_STREAM_MID_SEQUENCE = 1u << 0, /* the ids continue text already shown (say, generated
                                          tokens after a prompt): keep a leading space */
};

int tok_stream_init(tok_stream *s, const tokenizer *t, unsigned flags, rlhf_error *err);
/* Adds one id; *text and *len receive the newly complete text (possibly empty). The buffer belongs
 * to the stream and stays valid until the next push, flush or free. */
int tok_stream_push(tok_stream *s, int32_t id, const char **text, size_t *len, rlhf_error *err);
/* Ends the text: bytes still pending (a cut character) come out as U+FFFD. The stream can then
 * be reused for a new text. */
int tok_stream_flush(tok_stream *s, const char **text, size_t *len, rlhf_error *err);
/* Frees the stream's buffer; safe on a zeroed struct and safe twice. */
void tok_stream_free(tok_stream *s);

/* Number of ids (largest id + 1, added tokens included). */
int tok_vocab_size(const tokenizer *t);
/* Ids of the beginning/end-of-text and padding tokens, -1 if the tokenizer has none. */
int32_t tok_bos_id(const tokenizer *t);
int32_t tok_eos_id(const tokenizer *t);
int32_t tok_pad_id(const tokenizer *t);
/* Id of the added/special token whose text is exactly `text` ("<|im_start|>"), -1 if none. */
int32_t tok_special_id(const tokenizer *t, const char *text);
/* The vocabulary string of `id` as the file spells it ("Ġthe", "▁the", "<0x0A>", "<s>"); NULL
 * for an id out of range or unused. Borrowed: valid while the tokenizer is open. */
const char *tok_piece(const tokenizer *t, int32_t id);
/* 1 if id is a special token (BOS, EOS, chat markers...), 0 otherwise. */
int tok_id_is_special(const tokenizer *t, int32_t id);

/* Training progress: `phase` is "count" (reading corpora: done/total in bytes) or "merge"
 * (done/total merges). Return non-zero to stop (training then returns RLHF_ERR_INTERRUPTED). */
typedef int (*tok_progress_fn)(void *ctx, const char *phase, long long done, long long total);

/* Learns a byte-level BPE vocabulary of `vocab_size` ids (specials first, then the 256 bytes,
 * then one id per merge) from the corpus files with the GPT-2 pre-tokenizer, as Hugging Face's
 * BpeTrainer does: the most frequent pair is merged first, ties go to the pair of smaller ids,
 * so the result depends only on the input. `progress` may be NULL. On success *out is a new
 * tokenizer the caller closes (save it with tok_save). BOS/EOS/PAD among the specials are
 * recognised by name ("<|endoftext|>", "<s>", "</s>", "<pad>"...) as they are when loading. */
int tok_train_bpe(tokenizer **out, const char *const *corpus_paths, int n_paths, int vocab_size,
                  const char *const *specials, int n_specials, tok_progress_fn progress,
                  void *progress_ctx, rlhf_error *err);

#endif
