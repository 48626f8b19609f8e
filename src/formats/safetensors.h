/* safetensors.h — reading and writing the safetensors tensor file format, for any named tensors.
 *
 * A safetensors file is an 8-byte little-endian header length N, N bytes of JSON mapping each
 * tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data
 * section that follows the header), an optional "__metadata__" object of string values, and the
 * raw little-endian tensor bytes. This module knows nothing of models: checkpoint.c maps model
 * tensors to names, and `rlhf loss --grads` writes gradients under the same names.
 *
 * Reading maps the file (read-only) and validates the whole header up front: header length
 * within the file, JSON valid, every entry complete, each byte range inside the data section,
 * of exactly numel * dtype-size bytes and overlapping no other tensor. F32, F16, BF16 and F64
 * tensors convert to float32 on read; other dtypes are listed but refused when read.
 * Writing puts tensors in the given order, pads the header with spaces to a multiple of 8 bytes
 * and writes atomically (src/core/fileio.h). Every error message names the file and, where there is
 * one, the tensor. Multi-byte values are little-endian on disk; the host is assumed to be too. */
#ifndef RLHF_SAFETENSORS_H
#define RLHF_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "src/core/error.h"

typedef enum {
    SAFETENSORS_DTYPE_F32 = 0,
    SAFETENSORS_DTYPE_F16,
    SAFETENSORS_DTYPE_BF16,
    SAFETENSORS_DTYPE_F64,
    SAFETENSORS_DTYPE_I64,
    SAFETENSORS_DTYPE_I32,
    SAFETENSORS_DTYPE_I16,
    SAFETENSORS_DTYPE_I8,
    SAFETENSORS_DTYPE_U64,
    SAFETENSORS_DTYPE_U32,
    SAFETENSORS_DTYPE_U16,
    SAFETENSORS_DTYPE_U8,
    SAFETENSORS_DTYPE_BOOL,
    SAFETENSORS_DTYPE_F8_E4M3,
    SAFETENSORS_DTYPE_F8_E5M2,
    SAFETENSORS_DTYPE_COUNT
} safetensors_dtype;

/* "F32", "BF16", ... as written in headers. Never NULL. */
const char *safetensors_dtype_name(safetensors_dtype dtype);
/* Bytes per element. */
size_t safetensors_dtype_size(safetensors_dtype dtype);

#define SAFETENSORS_MAX_DIMS 8
/* The format's own limit (the reference implementation refuses larger headers). */
#define SAFETENSORS_MAX_HEADER ((uint64_t)100000000)

typedef struct {
    char *name;                        /* owned by the file handle */
    safetensors_dtype dtype;
    int ndim;                          /* 0 (scalar) .. SAFETENSORS_MAX_DIMS */
    int64_t shape[SAFETENSORS_MAX_DIMS];
    size_t numel;                      /* product of shape (1 for a scalar) */
    uint64_t begin, end;               /* byte range within the data section */
} safetensors_tensor;

typedef struct {
    char *path;                        /* owned copy of the path it was opened from */
    safetensors_tensor *tensors;       /* (n_tensors) in order of data offset; owned */
    int n_tensors;
    char **meta_keys, **meta_values;   /* (n_meta) the "__metadata__" pairs; owned */
    int n_meta;
    const unsigned char *data;         /* start of the data section, inside the mapping */
    uint64_t data_size;                /* bytes from `data` to the end of the file */
    void *map;                         /* the read-only mapping of the whole file */
    size_t map_size;
} safetensors_file;

/* Opens and validates `path`. On success *out is a handle the caller releases with
 * safetensors_close; on error *out is NULL and err names the file (and tensor). */
int safetensors_open(safetensors_file **out, const char *path, rlhf_error *err);
/* Unmaps and frees the handle and NULLs *f; safe on NULL and safe twice. */
void safetensors_close(safetensors_file **f);
/* The tensor called `name`, or NULL. The pointer is owned by f. */
const safetensors_tensor *safetensors_find(const safetensors_file *f, const char *name);
/* The value of a "__metadata__" key, or NULL. Owned by f. */
const char *safetensors_metadata(const safetensors_file *f, const char *key);
/* Converts tensor t of f into float32 `out`, which must hold exactly `n` == t->numel floats
 * (RLHF_ERR_SHAPE otherwise). Dtypes other than F32/F16/BF16/F64 give RLHF_ERR_UNSUPPORTED.
 * Values are copied as stored: NaN/inf are not checked here. */
int safetensors_read_f32(const safetensors_file *f, const safetensors_tensor *t, float *out, size_t n,
                         rlhf_error *err);

/* One tensor to write: float32 values stored as `dtype` (F32, F16 or BF16, rounded to nearest
 * even). All pointers are borrowed for the duration of the call. */
typedef struct {
    const char *name;
    safetensors_dtype dtype;
    int ndim;                          /* 0 .. SAFETENSORS_MAX_DIMS */
    int64_t shape[SAFETENSORS_MAX_DIMS];
    const float *data;                 /* (product of shape) floats */
} safetensors_entry;

/* Writes the n entries to `path` atomically, in the given order, with "__metadata__"
 * {"format": "pt"}. Names must be unique and not "__metadata__". On error the previous file
 * at `path` (if any) is untouched and no temporary file is left behind. */
int safetensors_write(const char *path, const safetensors_entry *entries, int n, rlhf_error *err);
/* The same bytes written to an open stream (for callers that stage several files before
 * committing them together, like checkpoint_save). `path` only names the file in messages.
 * Checks every fwrite; the caller still has to flush and check the stream. */
int safetensors_write_stream(FILE *fp, const char *path, const safetensors_entry *entries, int n, rlhf_error *err);

/* The conversions the reader and writer use, exposed for tests and other formats. */
float safetensors_f16_to_f32(uint16_t h);
uint16_t safetensors_f32_to_f16(float f);
float safetensors_bf16_to_f32(uint16_t h);
/* Converts n little-endian halves (possibly unaligned) at src into out (n floats). */
void safetensors_f16_array_to_f32(float *out, const unsigned char *src, size_t n);
void safetensors_bf16_array_to_f32(float *out, const unsigned char *src, size_t n);
uint16_t safetensors_f32_to_bf16(float f);

#endif
