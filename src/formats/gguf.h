/* gguf.h — reading GGUF files (llama.cpp's model format, versions 2 and 3).
 *
 * A GGUF file is: magic "GGUF", uint32 version, uint64 tensor count, uint64 metadata count;
 * the metadata as (string key, uint32 type, value) triples (strings are uint64 length + bytes,
 * arrays uint32 element type + uint64 count + elements); the tensor infos as (name, uint32
 * n_dims, uint64 dims[n_dims] innermost first, uint32 ggml type, uint64 offset); padding to
 * `general.alignment` (default 32); the tensor data. All little-endian.
 *
 * The file is mapped read-only and every offset, length and count is checked against its size
 * before use. Tensors of type F32, F16, BF16 and the block formats of quants.h (Q4_0 ... Q8_0,
 * Q2_K ... Q6_K) are dequantised to float32 on read; other types are listed but refused by name
 * ("IQ2_XXS is not supported").
 *
 * gguf_load_model maps a llama- or gpt2-architecture file onto the project's model (Hugging
 * Face layout, see model.h):
 *   token_embd, position_embd (gpt2), output_norm, output (absent or equal to token_embd when
 *   tied), and per layer blk.N.{attn_norm, attn_q, attn_k, attn_v (llama) | attn_qkv (gpt2),
 *   attn_output, ffn_norm, ffn_gate (llama), ffn_up, ffn_down} (+ .bias for gpt2);
 * GGUF stores every matrix as [out, in] rows, so GPT-2's Conv1D matrices are transposed back
 * to [in, out]; llama.cpp's converter permutes the rows of q and k for its interleaved RoPE, so
 * they are permuted back to Hugging Face's half-split order. The config comes from the
 * `<arch>.*` keys; BOS/EOS ids from tokenizer.ggml.*.
 *
 * gguf_load_tokenizer builds a tokenizer from tokenizer.ggml.* (model "gpt2": byte-level BPE
 * with its merges, pre-tokenizer chosen by tokenizer.ggml.pre; model "llama": SentencePiece
 * with scores) by building the equivalent tokenizer.json / tokenizer.bin in memory and loading
 * it with tok_load_buffer. */
#ifndef RLHF_GGUF_H
#define RLHF_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "src/core/error.h"
#include "src/model/model.h"
#include "src/tok/tokenizer.h"

typedef enum {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
} gguf_type;

/* ggml tensor types this reader knows by name (values as in ggml.h). */
enum {
    GGUF_TENSOR_F32 = 0,
    GGUF_TENSOR_F16 = 1,
    GGUF_TENSOR_Q8_0 = 8,
    GGUF_TENSOR_BF16 = 30,
};

/* Name of a ggml tensor type ("F32", "Q8_0", "Q4_K"...; "type N" if unknown). Never NULL. */
const char *gguf_tensor_type_name(uint32_t type);

typedef struct {
    const char *key;      /* points into the mapping, NOT NUL-terminated: use key_len */
    size_t key_len;
    gguf_type type;
    gguf_type arr_type;   /* element type when type == GGUF_TYPE_ARRAY */
    uint64_t arr_n;       /* element count when type == GGUF_TYPE_ARRAY */
    const unsigned char *value; /* the value's bytes (for arrays: the first element) */
} gguf_kv;

typedef struct {
    const char *name;     /* points into the mapping; name_len bytes */
    size_t name_len;
    int n_dims;           /* 1..4 */
    uint64_t ne[4];       /* ggml order: ne[0] is the innermost (row length) */
    uint32_t type;        /* ggml type */
    uint64_t offset;      /* from the start of the data section */
    uint64_t n_bytes;
    uint64_t numel;
} gguf_tensor;

typedef struct {
    char *path;           /* owned copy */
    uint32_t version;
    gguf_kv *kv;          /* (n_kv) owned */
    int64_t n_kv;
    gguf_tensor *tensors; /* (n_tensors) owned */
    int64_t n_tensors;
    uint32_t alignment;
    const unsigned char *data; /* start of the tensor data section */
    const unsigned char *map;  /* the read-only mapping */
    size_t map_size;
} gguf_file;

/* Opens and validates `path`. On success *out is a handle released with gguf_close; on error
 * *out is NULL and err names the file and what is wrong. */
int gguf_open(gguf_file **out, const char *path, rlhf_error *err);
/* Unmaps and frees; NULLs *f; safe on NULL and twice. */
void gguf_close(gguf_file **f);

/* Metadata lookup; NULL if absent. */
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);
/* Typed getters: 0 on success; RLHF_ERR_NOT_FOUND if absent, RLHF_ERR_FORMAT if the type does
 * not fit. Integers of any width convert (range-checked); floats accept FLOAT32/FLOAT64. */
int gguf_get_int(const gguf_file *f, const char *key, int64_t *out, rlhf_error *err);
int gguf_get_float(const gguf_file *f, const char *key, double *out, rlhf_error *err);
/* A string value: on success *out is a new NUL-terminated copy the caller frees. */
int gguf_get_string(const gguf_file *f, const char *key, char **out, rlhf_error *err);
/* Element i of a string array: a pointer into the mapping and its length. */
int gguf_array_string(const gguf_kv *kv, uint64_t i, const char **s, size_t *len);

/* Tensor lookup; NULL if absent. */
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);
/* Dequantises tensor t into out (t->numel floats, ggml order). RLHF_ERR_UNSUPPORTED for types
 * this reader lacks, RLHF_ERR_FORMAT for a block format whose rows are not whole blocks (the
 * message names the tensor and its type). */
int gguf_tensor_read_f32(const gguf_file *f, const gguf_tensor *t, float *out, rlhf_error *err);

/* Builds m (need not be initialised) from a llama/gpt2 GGUF file. On success m owns its
 * parameters (model_free); on error m is zeroed and err names the file and tensor/key. */
int gguf_load_model(model *m, const gguf_file *f, rlhf_error *err);
/* Builds a tokenizer from the file's tokenizer.ggml.* metadata. On success *out is a new
 * tokenizer the caller closes with tok_close; RLHF_ERR_NOT_FOUND when the file has no
 * vocabulary, RLHF_ERR_UNSUPPORTED for tokenizer models other than "gpt2" and "llama". */
int gguf_load_tokenizer(tokenizer **out, const gguf_file *f, rlhf_error *err);

#endif
