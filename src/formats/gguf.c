/* gguf.c — the GGUF reader, the tensor-name mapping onto model.h's layout, and the tokenizer
 * built from GGUF metadata (see gguf.h). */
#include "src/formats/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "src/core/fileio.h"
#include "src/model/quants.h"
#include "src/formats/safetensors.h"

const char *gguf_tensor_type_name(uint32_t type) {
    static const char *const names[] = {
        "F32",     "F16",    "Q4_0",  "Q4_1",   "type 4", "type 5", "Q5_0",  "Q5_1",  "Q8_0",    "Q8_1", "Q2_K",
        "Q3_K",    "Q4_K",   "Q5_K",  "Q6_K",   "Q8_K",   "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",
        "IQ2_S",   "IQ4_XS", "I8",    "I16",    "I32",    "I64",    "F64",   "IQ1_M", "BF16",
    };
    if (type < sizeof names / sizeof names[0]) return names[type];
    return "unknown type";
}

/* ---- parsing ---- */

typedef struct {
    const unsigned char *p, *end;
    const char *path;
    rlhf_error *err;
} cursor;

static int need(cursor *c, uint64_t n, const char *what) {
    if ((uint64_t)(c->end - c->p) < n)
        return rlhf_errorf(c->err, RLHF_ERR_FORMAT, "%s: truncated while reading %s", c->path, what);
    return RLHF_OK;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what) {
    if (need(c, 4, what)) return RLHF_ERR_FORMAT;
    memcpy(v, c->p, 4);
    c->p += 4;
    return RLHF_OK;
}

static int rd_u64(cursor *c, uint64_t *v, const char *what) {
    if (need(c, 8, what)) return RLHF_ERR_FORMAT;
    memcpy(v, c->p, 8);
    c->p += 8;
    return RLHF_OK;
}

static int rd_str(cursor *c, const char **s, size_t *len, const char *what) {
    uint64_t n;
    if (rd_u64(c, &n, what) || need(c, n, what)) return RLHF_ERR_FORMAT;
    *s = (const char *)c->p;
    *len = (size_t)n;
    c->p += n;
    return RLHF_OK;
}

static size_t scalar_size(gguf_type t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

static int skip_value(cursor *c, gguf_type t, int depth, const char *what) {
    size_t sz = scalar_size(t);
    if (sz) {
        if (need(c, sz, what)) return RLHF_ERR_FORMAT;
        c->p += sz;
        return RLHF_OK;
    }
    if (t == GGUF_TYPE_STRING) {
        const char *s;
        size_t l;
        return rd_str(c, &s, &l, what);
    }
    if (t == GGUF_TYPE_ARRAY) {
        uint32_t et;
        uint64_t n;
        if (depth > 4) return rlhf_errorf(c->err, RLHF_ERR_FORMAT, "%s: %s: arrays nested too deep", c->path, what);
        if (rd_u32(c, &et, what) || rd_u64(c, &n, what)) return RLHF_ERR_FORMAT;
        size_t esz = scalar_size((gguf_type)et);
        if (esz) {
            if (n > (uint64_t)(c->end - c->p) / esz) return need(c, UINT64_MAX, what);
            c->p += n * esz;
            return RLHF_OK;
        }
        if (et != GGUF_TYPE_STRING && et != GGUF_TYPE_ARRAY)
            return rlhf_errorf(c->err, RLHF_ERR_FORMAT, "%s: %s: unknown array element type %u", c->path, what, et);
        for (uint64_t i = 0; i < n; i++)
            if (skip_value(c, (gguf_type)et, depth + 1, what)) return RLHF_ERR_FORMAT;
        return RLHF_OK;
    }
    return rlhf_errorf(c->err, RLHF_ERR_FORMAT, "%s: %s: unknown value type %u", c->path, what, (unsigned)t);
}

/* Bytes of a tensor of `numel` elements of a supported type; 0 for other types. */
static uint64_t tensor_bytes(uint32_t type, uint64_t numel, uint64_t ne0) {
    switch (type) {
    case GGUF_TENSOR_F32: return numel * 4;
    case GGUF_TENSOR_F16: case GGUF_TENSOR_BF16: return numel * 2;
    default: {
        int elems, bytes;
        if (!quant_block_info(type, &elems, &bytes) || ne0 % (uint64_t)elems) return 0;
        return numel / (uint64_t)elems * (uint64_t)bytes;
    }
    }
}

static int key_is(const char *k, size_t kl, const char *s) { return strlen(s) == kl && memcmp(k, s, kl) == 0; }

void gguf_close(gguf_file **pf) {
    if (!pf || !*pf) return;
    gguf_file *f = *pf;
    if (f->map) munmap((void *)f->map, f->map_size);
    free(f->kv);
    free(f->tensors);
    free(f->path);
    free(f);
    *pf = NULL;
}

int gguf_open(gguf_file **out, const char *path, rlhf_error *err) {
    *out = NULL;
    gguf_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    }
    int rc = RLHF_OK;
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        goto fail;
    }
    if (st.st_size < 24) {
        close(fd);
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: too short for a GGUF file (%lld bytes)", path, (long long)st.st_size);
        goto fail;
    }
    f->map_size = (size_t)st.st_size;
    void *map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
        goto fail;
    }
    f->map = map;
    cursor c = {f->map, f->map + f->map_size, path, err};
    if (memcmp(c.p, "GGUF", 4) != 0) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: not a GGUF file (bad magic)", path);
        goto fail;
    }
    c.p += 4;
    uint64_t n_tensors, n_kv;
    rd_u32(&c, &f->version, "version");
    if (f->version != 2 && f->version != 3) {
        rc = rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (2 and 3 are)", path, f->version);
        goto fail;
    }
    if ((rc = rd_u64(&c, &n_tensors, "tensor count")) || (rc = rd_u64(&c, &n_kv, "metadata count"))) goto fail;
    /* every entry takes at least 8 + 4 bytes, so counts beyond size/12 are lies */
    if (n_tensors > f->map_size / 12 || n_kv > f->map_size / 12) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: implausible counts (%llu tensors, %llu metadata keys)", path,
                         (unsigned long long)n_tensors, (unsigned long long)n_kv);
        goto fail;
    }
    f->kv = calloc(n_kv ? n_kv : 1, sizeof *f->kv);
    f->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    f->alignment = 32;
    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        uint32_t t;
        if ((rc = rd_str(&c, &kv->key, &kv->key_len, "a metadata key")) || (rc = rd_u32(&c, &t, "a metadata type")))
            goto fail;
        kv->type = (gguf_type)t;
        const unsigned char *start = c.p;
        if (t == GGUF_TYPE_ARRAY) {
            uint32_t et;
            if ((rc = rd_u32(&c, &et, "an array type")) || (rc = rd_u64(&c, &kv->arr_n, "an array length"))) goto fail;
            kv->arr_type = (gguf_type)et;
            kv->value = c.p;
            c.p = start;
        } else {
            kv->value = c.p;
        }
        char what[160];
        snprintf(what, sizeof what, "metadata '%.*s'", (int)(kv->key_len < 100 ? kv->key_len : 100), kv->key);
        if ((rc = skip_value(&c, kv->type, 0, what))) goto fail;
        f->n_kv++;
        if (key_is(kv->key, kv->key_len, "general.alignment")) {
            uint32_t a = 0;
            if (kv->type == GGUF_TYPE_UINT32) memcpy(&a, kv->value, 4);
            if (a == 0 || (a & (a - 1))) {
                rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: general.alignment must be a power of two uint32", path);
                goto fail;
            }
            f->alignment = a;
        }
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        uint32_t nd;
        if ((rc = rd_str(&c, &t->name, &t->name_len, "a tensor name")) || (rc = rd_u32(&c, &nd, "tensor dims")))
            goto fail;
        if (nd < 1 || nd > 4) {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: tensor '%.*s' has %u dimensions", path, (int)t->name_len, t->name, nd);
            goto fail;
        }
        t->n_dims = (int)nd;
        t->numel = 1;
        for (uint32_t d = 0; d < 4; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < nd; d++) {
            if ((rc = rd_u64(&c, &t->ne[d], "tensor shape"))) goto fail;
            if (t->ne[d] == 0 || t->ne[d] > ((uint64_t)1 << 40) || t->numel > ((uint64_t)1 << 40) / t->ne[d]) {
                rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: tensor '%.*s' has an implausible shape", path, (int)t->name_len,
                                 t->name);
                goto fail;
            }
            t->numel *= t->ne[d];
        }
        if ((rc = rd_u32(&c, &t->type, "tensor type")) || (rc = rd_u64(&c, &t->offset, "tensor offset"))) goto fail;
        t->n_bytes = tensor_bytes(t->type, t->numel, t->ne[0]);
        f->n_tensors++;
    }
    size_t hdr = (size_t)(c.p - f->map);
    size_t data_off = (hdr + f->alignment - 1) / f->alignment * f->alignment;
    if (data_off > f->map_size) data_off = f->map_size;
    f->data = f->map + data_off;
    const uint64_t data_size = f->map_size - data_off;
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        /* the offset too, even when the size is unknown (type this reader lacks): reading such
         * a tensor still forms its address before refusing the type */
        if (t->offset > data_size || (t->n_bytes && t->n_bytes > data_size - t->offset)) {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: tensor '%.*s' (%s, %llu bytes at %llu) runs past the end of the file",
                             path, (int)t->name_len, t->name, gguf_tensor_type_name(t->type),
                             (unsigned long long)t->n_bytes, (unsigned long long)t->offset);
            goto fail;
        }
    }
    *out = f;
    return RLHF_OK;
fail:
    gguf_close(&f);
    return rc;
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key) {
    for (int64_t i = 0; i < f->n_kv; i++)
        if (key_is(f->kv[i].key, f->kv[i].key_len, key)) return &f->kv[i];
    return NULL;
}

static int read_int(gguf_type t, const unsigned char *v, int64_t *out) {
    switch (t) {
    case GGUF_TYPE_UINT8: *out = *v; return 1;
    case GGUF_TYPE_INT8: *out = (int8_t)*v; return 1;
    case GGUF_TYPE_BOOL: *out = *v != 0; return 1;
    case GGUF_TYPE_UINT16: { uint16_t x; memcpy(&x, v, 2); *out = x; return 1; }
    case GGUF_TYPE_INT16: { int16_t x; memcpy(&x, v, 2); *out = x; return 1; }
    case GGUF_TYPE_UINT32: { uint32_t x; memcpy(&x, v, 4); *out = x; return 1; }
    case GGUF_TYPE_INT32: { int32_t x; memcpy(&x, v, 4); *out = x; return 1; }
    case GGUF_TYPE_UINT64: { uint64_t x; memcpy(&x, v, 8); if (x > INT64_MAX) return 0; *out = (int64_t)x; return 1; }
    case GGUF_TYPE_INT64: { int64_t x; memcpy(&x, v, 8); *out = x; return 1; }
    default: return 0;
    }
}

int gguf_get_int(const gguf_file *f, const char *key, int64_t *out, rlhf_error *err) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: metadata '%s' is missing", f->path, key);
    if (!read_int(kv->type, kv->value, out))
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: metadata '%s' is not an integer", f->path, key);
    return RLHF_OK;
}

int gguf_get_float(const gguf_file *f, const char *key, double *out, rlhf_error *err) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: metadata '%s' is missing", f->path, key);
    if (kv->type == GGUF_TYPE_FLOAT32) {
        float x;
        memcpy(&x, kv->value, 4);
        *out = x;
    } else if (kv->type == GGUF_TYPE_FLOAT64) {
        memcpy(out, kv->value, 8);
    } else {
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: metadata '%s' is not a float", f->path, key);
    }
    return RLHF_OK;
}

int gguf_get_string(const gguf_file *f, const char *key, char **out, rlhf_error *err) {
    *out = NULL;
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: metadata '%s' is missing", f->path, key);
    if (kv->type != GGUF_TYPE_STRING)
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: metadata '%s' is not a string", f->path, key);
    uint64_t n;
    memcpy(&n, kv->value, 8);
    *out = malloc((size_t)n + 1);
    if (!*out) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    memcpy(*out, kv->value + 8, (size_t)n);
    (*out)[n] = 0;
    return RLHF_OK;
}

/* String arrays have variable-length elements: walking to element i is O(i), so callers that
 * read every element use a cursor instead (see string_array_walk). */
int gguf_array_string(const gguf_kv *kv, uint64_t i, const char **s, size_t *len) {
    if (kv->type != GGUF_TYPE_ARRAY || kv->arr_type != GGUF_TYPE_STRING || i >= kv->arr_n) return RLHF_ERR_INVALID;
    const unsigned char *p = kv->value;
    for (uint64_t k = 0;; k++) {
        uint64_t n;
        memcpy(&n, p, 8);
        if (k == i) {
            *s = (const char *)p + 8;
            *len = (size_t)n;
            return RLHF_OK;
        }
        p += 8 + n;
    }
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    for (int64_t i = 0; i < f->n_tensors; i++)
        if (key_is(f->tensors[i].name, f->tensors[i].name_len, name)) return &f->tensors[i];
    return NULL;
}

int gguf_tensor_read_f32(const gguf_file *f, const gguf_tensor *t, float *out, rlhf_error *err) {
    const unsigned char *src = f->data + t->offset;
    const size_t n = (size_t)t->numel;
    switch (t->type) {
    case GGUF_TENSOR_F32:
        memcpy(out, src, n * sizeof(float));
        return RLHF_OK;
    case GGUF_TENSOR_F16:
        safetensors_f16_array_to_f32(out, src, n);
        return RLHF_OK;
    case GGUF_TENSOR_BF16:
        safetensors_bf16_array_to_f32(out, src, n);
        return RLHF_OK;
    default: {
        int elems;
        if (t->n_bytes == 0 || !quant_block_info(t->type, &elems, NULL)) break;
        quant_dequantize(t->type, src, n / (size_t)elems, out);
        return RLHF_OK;
    }
    }
    if (t->n_bytes == 0 && quant_block_info(t->type, NULL, NULL))
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: tensor '%.*s' (%s) has rows of %llu values, not a whole number of blocks",
                           f->path, (int)t->name_len, t->name, gguf_tensor_type_name(t->type), (unsigned long long)t->ne[0]);
    return rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: tensor '%.*s' has type %s, which is not supported (F32, F16, BF16, "
                       "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K and Q6_K are)",
                       f->path, (int)t->name_len, t->name, gguf_tensor_type_name(t->type));
}

/* ---- model ---- */

typedef struct {
    const gguf_file *f;
    unsigned char *used; /* (n_tensors) */
    float *tmp;          /* scratch for transposes / permutations */
    rlhf_error *err;
} loader;

/* Reads GGUF tensor `name` whose ggml shape must be (ne0 = in, ne1 = out) (or (n) for 1-D
 * with out == 0), into dst: as stored ([out, in] rows) when transpose == 0, transposed to
 * [in, out] when transpose == 1. permute_heads > 0 undoes llama.cpp's q/k row permutation
 * for that many heads. */
static int load_tensor(loader *L, float *dst, const char *name, int64_t in, int64_t out, int transpose, int permute_heads) {
    const gguf_tensor *t = gguf_find_tensor(L->f, name);
    if (!t) return rlhf_errorf(L->err, RLHF_ERR_NOT_FOUND, "%s: tensor '%s' is missing", L->f->path, name);
    L->used[t - L->f->tensors] = 1;
    int ok = out == 0 ? (t->n_dims == 1 && (int64_t)t->ne[0] == in)
                      : (t->n_dims == 2 && (int64_t)t->ne[0] == in && (int64_t)t->ne[1] == out);
    if (!ok)
        return rlhf_errorf(L->err, RLHF_ERR_SHAPE, "%s: tensor '%s' has shape [%llu, %llu], expected [%lld, %lld]", L->f->path,
                           name, (unsigned long long)t->ne[0], (unsigned long long)(t->n_dims > 1 ? t->ne[1] : 1),
                           (long long)in, (long long)(out ? out : 1));
    if (!transpose && !permute_heads) return gguf_tensor_read_f32(L->f, t, dst, L->err);
    int rc = gguf_tensor_read_f32(L->f, t, L->tmp, L->err);
    if (rc) return rc;
    if (transpose) {
        for (int64_t o = 0; o < out; o++)
            for (int64_t i = 0; i < in; i++) dst[i * out + o] = L->tmp[o * in + i];
    } else {
        /* GGUF row 2i + a of a head is Hugging Face row a * HS/2 + i of that head. */
        const int64_t hs = out / permute_heads;
        for (int64_t h = 0; h < permute_heads; h++)
            for (int64_t i = 0; i < hs / 2; i++)
                for (int a = 0; a < 2; a++)
                    memcpy(dst + (h * hs + a * hs / 2 + i) * in, L->tmp + (h * hs + 2 * i + a) * in,
                           (size_t)in * sizeof(float));
    }
    return RLHF_OK;
}

static int get_dim(const gguf_file *f, const char *arch, const char *suffix, int64_t *out, int required,
                   int64_t dflt, rlhf_error *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_get_int(f, key, out, err);
    if (rc == RLHF_ERR_NOT_FOUND && !required) {
        *out = dflt;
        return RLHF_OK;
    }
    if (!rc && (*out < 0 || *out > (1 << 24)))
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: metadata '%s' = %lld is out of range", f->path, key, (long long)*out);
    return rc;
}

int gguf_load_model(model *m, const gguf_file *f, rlhf_error *err) {
    memset(m, 0, sizeof *m);
    char *arch = NULL;
    loader L = {f, NULL, NULL, err};
    int rc = gguf_get_string(f, "general.architecture", &arch, err);
    if (rc) return rc;
    model_family fam;
    if (strcmp(arch, "llama") == 0) fam = MODEL_FAMILY_LLAMA;
    else if (strcmp(arch, "gpt2") == 0) fam = MODEL_FAMILY_GPT2;
    else {
        rc = rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: architecture '%s' is not supported (llama and gpt2 are)", f->path, arch);
        free(arch);
        return rc;
    }
    model_config c;
    model_config_defaults(&c, fam);
    int64_t L_, C, F, NH, NKV, ctx, rot = 0;
    double eps = fam == MODEL_FAMILY_LLAMA ? 1e-5 : 1e-5, theta = 10000.0;
    if ((rc = get_dim(f, arch, "block_count", &L_, 1, 0, err)) || (rc = get_dim(f, arch, "embedding_length", &C, 1, 0, err)) ||
        (rc = get_dim(f, arch, "feed_forward_length", &F, 1, 0, err)) ||
        (rc = get_dim(f, arch, "attention.head_count", &NH, 1, 0, err)) ||
        (rc = get_dim(f, arch, "attention.head_count_kv", &NKV, 0, NH, err)) ||
        (rc = get_dim(f, arch, "context_length", &ctx, 1, 0, err)))
        goto fail;
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch,
             fam == MODEL_FAMILY_LLAMA ? "attention.layer_norm_rms_epsilon" : "attention.layer_norm_epsilon");
    if ((rc = gguf_get_float(f, key, &eps, err)) && rc != RLHF_ERR_NOT_FOUND) goto fail;
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    if ((rc = gguf_get_float(f, key, &theta, err)) && rc != RLHF_ERR_NOT_FOUND) goto fail;
    rc = RLHF_OK;
    if (fam == MODEL_FAMILY_LLAMA && NH > 0 && (rc = get_dim(f, arch, "rope.dimension_count", &rot, 0, C / NH, err))) goto fail;
    if (fam == MODEL_FAMILY_LLAMA && NH > 0 && rot != C / NH) {
        rc = rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: partial rotary embeddings (%lld of %lld dims) are not supported", f->path,
                         (long long)rot, (long long)(C / NH));
        goto fail;
    }
    const gguf_tensor *te = gguf_find_tensor(f, "token_embd.weight");
    if (!te || te->n_dims != 2) {
        rc = rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: tensor 'token_embd.weight' is missing or not 2-D", f->path);
        goto fail;
    }
    /* the vocabulary comes from this tensor, so its other side must be the embedding width now,
     * before anything is read into buffers sized from it */
    if (te->ne[0] != (uint64_t)C || te->ne[1] > (uint64_t)INT32_MAX / 2) {
        rc = rlhf_errorf(err, RLHF_ERR_SHAPE, "%s: tensor 'token_embd.weight' is %llu x %llu, expected %lld x vocabulary",
                         f->path, (unsigned long long)te->ne[0], (unsigned long long)te->ne[1], (long long)C);
        goto fail;
    }
    /* Llama 3.1-style frequency scaling changes every rotary angle; refused, as config.json's
     * rope_scaling is, rather than loaded as plain RoPE */
    char rope_key[128];
    snprintf(rope_key, sizeof rope_key, "%s.rope.scaling.type", arch);
    char *scaling = NULL;
    gguf_get_string(f, rope_key, &scaling, NULL);
    const int scaled = (scaling && strcmp(scaling, "none") != 0) || gguf_find_tensor(f, "rope_freqs.weight");
    if (scaled) {
        rc = rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: RoPE scaling (%s) is not supported", f->path,
                         scaling && strcmp(scaling, "none") != 0 ? scaling : "rope_freqs.weight");
        free(scaling);
        goto fail;
    }
    free(scaling);
    c.n_layers = (int)L_;
    c.dim = (int)C;
    c.ffn_dim = (int)F;
    c.n_heads = (int)NH;
    c.n_kv_heads = (int)NKV;
    c.context = (int)ctx;
    c.vocab_size = (int)te->ne[1];
    c.norm_eps = (float)eps;
    c.rope_theta = (float)theta;
    int64_t id;
    if (gguf_get_int(f, "tokenizer.ggml.bos_token_id", &id, NULL) == RLHF_OK && id >= 0 && id < c.vocab_size) c.bos_id = (int32_t)id;
    if (gguf_get_int(f, "tokenizer.ggml.eos_token_id", &id, NULL) == RLHF_OK && id >= 0 && id < c.vocab_size) c.eos_id = (int32_t)id;

    /* tied when there is no output matrix, or when it equals the embedding */
    const gguf_tensor *to = gguf_find_tensor(f, "output.weight");
    c.tied_embeddings = 1;
    size_t emb_n = (size_t)c.vocab_size * (size_t)c.dim;
    if (to) {
        if (to->n_dims != 2 || to->ne[0] != (uint64_t)C || to->ne[1] != (uint64_t)c.vocab_size) {
            rc = rlhf_errorf(err, RLHF_ERR_SHAPE, "%s: tensor 'output.weight' does not have the embedding's shape", f->path);
            goto fail;
        }
        float *a = malloc(emb_n * sizeof *a), *b = malloc(emb_n * sizeof *b);
        if (!a || !b) {
            free(a), free(b);
            rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
            goto fail;
        }
        rc = gguf_tensor_read_f32(f, te, a, err);
        if (!rc) rc = gguf_tensor_read_f32(f, to, b, err);
        if (!rc && memcmp(a, b, emb_n * sizeof *a) != 0) c.tied_embeddings = 0;
        free(a);
        free(b);
        if (rc) goto fail;
    }
    if ((rc = model_init(m, &c, err))) {
        rlhf_error_prefix(err, "%s: ", f->path);
        goto fail;
    }
    L.used = calloc((size_t)f->n_tensors + 1, 1);
    size_t big = emb_n;
    if ((size_t)(3 * C + 2 * F) * (size_t)(C > F ? C : F) > big) big = (size_t)(3 * C + 2 * F) * (size_t)(C > F ? C : F);
    L.tmp = malloc(big * sizeof(float));
    if (!L.used || !L.tmp) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
        goto fail;
    }
    const int64_t V = c.vocab_size, HS = C / NH, KVD = NKV * HS;
    model_weights *w = &m->w;
    char n[96];
#define LOAD(dst, nm, in, out, tr, perm)                                  \
    do {                                                                  \
        if ((rc = load_tensor(&L, (dst), (nm), (in), (out), (tr), (perm)))) goto fail; \
    } while (0)
    LOAD(w->tok_emb, "token_embd.weight", C, V, 0, 0);
    if (to) L.used[to - f->tensors] = 1;
    if (!c.tied_embeddings) LOAD(w->lm_head, "output.weight", C, V, 0, 0);
    if (fam == MODEL_FAMILY_GPT2) LOAD(w->pos_emb, "position_embd.weight", C, ctx, 0, 0);
    LOAD(w->lnf_w, "output_norm.weight", C, 0, 0, 0);
    if (fam == MODEL_FAMILY_GPT2) LOAD(w->lnf_b, "output_norm.bias", C, 0, 0, 0);
    for (int l = 0; l < c.n_layers; l++) {
        model_layer_weights *lw = &w->layers[l];
#define NAME(suffix) (snprintf(n, sizeof n, "blk.%d.%s", l, suffix), n)
        if (fam == MODEL_FAMILY_LLAMA) {
            LOAD(lw->ln1_w, NAME("attn_norm.weight"), C, 0, 0, 0);
            LOAD(lw->qkv_w, NAME("attn_q.weight"), C, NH * HS, 0, (int)NH);
            LOAD(lw->qkv_w + NH * HS * C, NAME("attn_k.weight"), C, KVD, 0, (int)NKV);
            LOAD(lw->qkv_w + (NH * HS + KVD) * C, NAME("attn_v.weight"), C, KVD, 0, 0);
            LOAD(lw->attn_out_w, NAME("attn_output.weight"), NH * HS, C, 0, 0);
            LOAD(lw->ln2_w, NAME("ffn_norm.weight"), C, 0, 0, 0);
            LOAD(lw->fc_w, NAME("ffn_gate.weight"), C, F, 0, 0);
            LOAD(lw->fc_w + F * C, NAME("ffn_up.weight"), C, F, 0, 0);
            LOAD(lw->proj_w, NAME("ffn_down.weight"), F, C, 0, 0);
        } else {
            LOAD(lw->ln1_w, NAME("attn_norm.weight"), C, 0, 0, 0);
            LOAD(lw->ln1_b, NAME("attn_norm.bias"), C, 0, 0, 0);
            LOAD(lw->qkv_w, NAME("attn_qkv.weight"), C, 3 * C, 1, 0);
            LOAD(lw->qkv_b, NAME("attn_qkv.bias"), 3 * C, 0, 0, 0);
            LOAD(lw->attn_out_w, NAME("attn_output.weight"), C, C, 1, 0);
            LOAD(lw->attn_out_b, NAME("attn_output.bias"), C, 0, 0, 0);
            LOAD(lw->ln2_w, NAME("ffn_norm.weight"), C, 0, 0, 0);
            LOAD(lw->ln2_b, NAME("ffn_norm.bias"), C, 0, 0, 0);
            LOAD(lw->fc_w, NAME("ffn_up.weight"), C, F, 1, 0);
            LOAD(lw->fc_b, NAME("ffn_up.bias"), F, 0, 0, 0);
            LOAD(lw->proj_w, NAME("ffn_down.weight"), F, C, 1, 0);
            LOAD(lw->proj_b, NAME("ffn_down.bias"), C, 0, 0, 0);
        }
#undef NAME
    }
#undef LOAD
    /* A tensor this mapping does not consume would make the model silently different. */
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        if (L.used[i]) continue;
        rc = rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: tensor '%.*s' has no place in a %s model", f->path, (int)t->name_len,
                         t->name, arch);
        goto fail;
    }
    for (size_t i = 0; i < m->n_floats; i++)
        if (!isfinite(m->params[i])) {
            for (int k = m->n_tensors - 1; k >= 0; k--)
                if (m->tensors[k].offset <= i) {
                    rc = rlhf_errorf(err, RLHF_ERR_NUMERIC, "%s: tensor for '%s' holds NaN/inf", f->path, m->tensors[k].name);
                    goto fail;
                }
        }
    free(L.used);
    free(L.tmp);
    free(arch);
    return RLHF_OK;
fail:
    free(L.used);
    free(L.tmp);
    free(arch);
    model_free(m);
    return rc;
}

/* ---- tokenizer ---- */

/* Walks a string array element by element (O(1) per element). */
typedef struct {
    const unsigned char *p;
    uint64_t i, n;
} str_walk;

static void walk_init(str_walk *w, const gguf_kv *kv) {
    w->p = kv->value;
    w->i = 0;
    w->n = kv->arr_n;
}

static void walk_next(str_walk *w, const char **s, size_t *len) {
    uint64_t n;
    memcpy(&n, w->p, 8);
    *s = (const char *)w->p + 8;
    *len = (size_t)n;
    w->p += 8 + n;
    w->i++;
}

static int numeric_array_get(const gguf_kv *kv, uint64_t i, double *out) {
    if (!kv || kv->type != GGUF_TYPE_ARRAY || i >= kv->arr_n) return 0;
    size_t sz = scalar_size(kv->arr_type);
    if (!sz) return 0;
    const unsigned char *v = kv->value + i * sz;
    if (kv->arr_type == GGUF_TYPE_FLOAT32) {
        float x;
        memcpy(&x, v, 4);
        *out = x;
        return 1;
    }
    if (kv->arr_type == GGUF_TYPE_FLOAT64) {
        memcpy(out, v, 8);
        return 1;
    }
    int64_t x;
    if (!read_int(kv->arr_type, v, &x)) return 0;
    *out = (double)x;
    return 1;
}

/* Llama 3's pre-tokenizer pattern (tokenizer.ggml.pre "llama-bpe"), as in its tokenizer.json. */
static const char *const LLAMA3_PATTERN =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";

static char *dup_n(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* A set of strings (open addressing, FNV-1a) to keep the first id of duplicated pieces. */
typedef struct {
    const char **keys;
    size_t *lens;
    size_t cap;
} str_set;

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* 1 if added, 0 if already present (the table is sized for every key up front). */
static int str_set_add(str_set *st, const char *s, size_t n) {
    size_t i = (size_t)fnv1a(s, n) & (st->cap - 1);
    while (st->keys[i]) {
        if (st->lens[i] == n && memcmp(st->keys[i], s, n) == 0) return 0;
        i = (i + 1) & (st->cap - 1);
    }
    st->keys[i] = s;
    st->lens[i] = n;
    return 1;
}

/* byte-level BPE: a tokenizer.json with the vocabulary, merges and the pre-tokenizer. */
static char *build_bpe_json(const gguf_file *f, const gguf_kv *tokens, const gguf_kv *types, const gguf_kv *merges,
                            const char *pre) {
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *vocab = cJSON_CreateObject();
    cJSON *mlist = cJSON_CreateArray(), *added = cJSON_CreateArray();
    char *out = NULL;
    (void)f;
    str_set seen = {0};
    seen.cap = 1;
    while (seen.cap < 2 * tokens->arr_n + 2) seen.cap *= 2;
    seen.keys = calloc(seen.cap, sizeof *seen.keys);
    seen.lens = calloc(seen.cap, sizeof *seen.lens);
    if (!root || !model || !vocab || !mlist || !added || !seen.keys || !seen.lens) goto done;
    str_walk w;
    walk_init(&w, tokens);
    for (uint64_t i = 0; i < tokens->arr_n; i++) {
        const char *s;
        size_t l;
        walk_next(&w, &s, &l);
        char *name = dup_n(s, l);
        if (!name) goto done;
        double ty = 1;
        numeric_array_get(types, i, &ty);
        /* a piece spelled twice keeps its first id (a JSON object cannot hold both) */
        if (str_set_add(&seen, s, l) == 1) cJSON_AddNumberToObject(vocab, name, (double)i);
        if (ty == 3 || ty == 4) { /* control / user-defined: added tokens */
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", (double)i);
            cJSON_AddStringToObject(a, "content", name);
            cJSON_AddBoolToObject(a, "single_word", 0);
            cJSON_AddBoolToObject(a, "lstrip", 0);
            cJSON_AddBoolToObject(a, "rstrip", 0);
            cJSON_AddBoolToObject(a, "normalized", ty == 4);
            cJSON_AddBoolToObject(a, "special", ty == 3);
            cJSON_AddItemToArray(added, a);
        }
        free(name);
    }
    if (merges) {
        walk_init(&w, merges);
        for (uint64_t i = 0; i < merges->arr_n; i++) {
            const char *s;
            size_t l;
            walk_next(&w, &s, &l);
            char *m = dup_n(s, l);
            if (!m) goto done;
            cJSON_AddItemToArray(mlist, cJSON_CreateString(m));
            free(m);
        }
    }
    const int llama3 = pre && strcmp(pre, "llama-bpe") == 0;
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddBoolToObject(model, "fuse_unk", 0);
    cJSON_AddBoolToObject(model, "byte_fallback", 0);
    cJSON_AddBoolToObject(model, "ignore_merges", llama3);
    cJSON_AddItemToObject(model, "vocab", vocab);
    vocab = NULL;
    cJSON_AddItemToObject(model, "merges", mlist);
    mlist = NULL;
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddItemToObject(root, "added_tokens", added);
    added = NULL;
    cJSON_AddNullToObject(root, "normalizer");
    cJSON *bl = cJSON_CreateObject();
    cJSON_AddStringToObject(bl, "type", "ByteLevel");
    cJSON_AddBoolToObject(bl, "add_prefix_space", 0);
    cJSON_AddBoolToObject(bl, "trim_offsets", 1);
    cJSON_AddBoolToObject(bl, "use_regex", !llama3);
    if (llama3) {
        cJSON *seq = cJSON_CreateObject(), *list = cJSON_CreateArray(), *split = cJSON_CreateObject(),
              *pat = cJSON_CreateObject();
        cJSON_AddStringToObject(seq, "type", "Sequence");
        cJSON_AddStringToObject(split, "type", "Split");
        cJSON_AddStringToObject(pat, "Regex", LLAMA3_PATTERN);
        cJSON_AddItemToObject(split, "pattern", pat);
        cJSON_AddStringToObject(split, "behavior", "Isolated");
        cJSON_AddBoolToObject(split, "invert", 0);
        cJSON_AddItemToArray(list, split);
        cJSON_AddItemToArray(list, bl);
        cJSON_AddItemToObject(seq, "pretokenizers", list);
        cJSON_AddItemToObject(root, "pre_tokenizer", seq);
    } else {
        cJSON_AddItemToObject(root, "pre_tokenizer", bl);
    }
    cJSON_AddNullToObject(root, "post_processor");
    cJSON *dec = cJSON_CreateObject();
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddItemToObject(root, "decoder", dec);
    cJSON_AddItemToObject(root, "model", model);
    model = NULL;
    out = cJSON_PrintUnformatted(root);
done:
    free(seen.keys);
    free(seen.lens);
    cJSON_Delete(root);
    cJSON_Delete(model);
    cJSON_Delete(vocab);
    cJSON_Delete(mlist);
    cJSON_Delete(added);
    return out;
}

/* SentencePiece with scores: llama2.c's tokenizer.bin layout (pieces spell the marker '▁' as a
 * space, as llama2.c's export does). */
static unsigned char *build_spm_bin(const gguf_kv *tokens, const gguf_kv *scores, int64_t bos, int64_t eos, size_t *len) {
    size_t cap = 4 + tokens->arr_n * 8, n = 4;
    str_walk w;
    walk_init(&w, tokens);
    for (uint64_t i = 0; i < tokens->arr_n; i++) {
        const char *s;
        size_t l;
        walk_next(&w, &s, &l);
        cap += l + 8;
    }
    unsigned char *buf = malloc(cap);
    if (!buf) return NULL;
    int32_t max_len = 1;
    walk_init(&w, tokens);
    for (uint64_t i = 0; i < tokens->arr_n; i++) {
        const char *s;
        size_t l;
        walk_next(&w, &s, &l);
        double sc = 0;
        numeric_array_get(scores, i, &sc);
        float score = (float)sc;
        /* '▁' (E2 96 81) -> ' ' */
        unsigned char *rec = buf + n;
        size_t o = 8;
        if ((int64_t)i == bos) s = "<s>", l = 3;
        else if ((int64_t)i == eos) s = "</s>", l = 4;
        for (size_t k = 0; k < l; k++) {
            if (k + 2 < l && (unsigned char)s[k] == 0xE2 && (unsigned char)s[k + 1] == 0x96 && (unsigned char)s[k + 2] == 0x81) {
                rec[o++] = ' ';
                k += 2;
            } else {
                rec[o++] = (unsigned char)s[k];
            }
        }
        int32_t pl = (int32_t)(o - 8);
        memcpy(rec, &score, 4);
        memcpy(rec + 4, &pl, 4);
        if (pl > max_len) max_len = pl;
        n += o;
    }
    memcpy(buf, &max_len, 4);
    *len = n;
    return buf;
}

int gguf_load_tokenizer(tokenizer **out, const gguf_file *f, rlhf_error *err) {
    *out = NULL;
    char *kind = NULL, *pre = NULL, *data = NULL, *cfg_json = NULL;
    uint8_t *kinds = NULL;
    size_t data_len = 0;
    int rc = gguf_get_string(f, "tokenizer.ggml.model", &kind, NULL);
    if (rc) return rlhf_errorf(err, RLHF_ERR_NOT_FOUND, "%s: no tokenizer in the metadata", f->path);
    const gguf_kv *tokens = gguf_find_kv(f, "tokenizer.ggml.tokens");
    const gguf_kv *types = gguf_find_kv(f, "tokenizer.ggml.token_type");
    const gguf_kv *merges = gguf_find_kv(f, "tokenizer.ggml.merges");
    const gguf_kv *scores = gguf_find_kv(f, "tokenizer.ggml.scores");
    if (!tokens || tokens->type != GGUF_TYPE_ARRAY || tokens->arr_type != GGUF_TYPE_STRING) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: tokenizer.ggml.tokens is missing or not a string array", f->path);
        goto done;
    }
    if (merges && (merges->type != GGUF_TYPE_ARRAY || merges->arr_type != GGUF_TYPE_STRING)) merges = NULL;
    gguf_get_string(f, "tokenizer.ggml.pre", &pre, NULL);
    int64_t bos = -1, eos = -1, pad = -1;
    gguf_get_int(f, "tokenizer.ggml.bos_token_id", &bos, NULL);
    gguf_get_int(f, "tokenizer.ggml.eos_token_id", &eos, NULL);
    gguf_get_int(f, "tokenizer.ggml.padding_token_id", &pad, NULL);
    if (strcmp(kind, "gpt2") == 0) {
        if (!merges) {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: a gpt2 tokenizer needs tokenizer.ggml.merges", f->path);
            goto done;
        }
        data = build_bpe_json(f, tokens, types, merges, pre);
        if (data) data_len = strlen(data);
    } else if (strcmp(kind, "llama") == 0) {
        data = (char *)build_spm_bin(tokens, scores, bos, eos, &data_len);
        /* token_type: 3 control (special), 4 user-defined; the layout above cannot say it */
        if (types && types->type == GGUF_TYPE_ARRAY && types->arr_n == tokens->arr_n && tokens->arr_n < INT32_MAX) {
            kinds = calloc(tokens->arr_n, 1);
            if (!kinds) {
                rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory building the tokenizer");
                goto done;
            }
            for (uint64_t i = 0; i < tokens->arr_n; i++) {
                double ty = 1;
                numeric_array_get(types, i, &ty);
                kinds[i] = ty == 3 ? TOK_PIECE_CONTROL : ty == 4 ? TOK_PIECE_USER : TOK_PIECE_NORMAL;
            }
        }
    } else {
        rc = rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: tokenizer model '%s' is not supported (gpt2 and llama are)", f->path, kind);
        goto done;
    }
    if (!data) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory building the tokenizer");
        goto done;
    }
    /* the special tokens' texts, so the tokenizer knows which ids are BOS/EOS/PAD */
    {
        cJSON *cfg = cJSON_CreateObject();
        const int64_t ids[3] = {bos, eos, pad};
        const char *keys[3] = {"bos_token", "eos_token", "pad_token"};
        for (int k = 0; k < 3; k++) {
            const char *s;
            size_t l;
            if (ids[k] < 0 || gguf_array_string(tokens, (uint64_t)ids[k], &s, &l)) continue;
            char *name = strcmp(kind, "llama") == 0 && k < 2 ? strdup(k == 0 ? "<s>" : "</s>") : dup_n(s, l);
            if (name) cJSON_AddStringToObject(cfg, keys[k], name);
            free(name);
        }
        cfg_json = cJSON_PrintUnformatted(cfg);
        cJSON_Delete(cfg);
        if (!cfg_json) {
            rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
            goto done;
        }
    }
    rc = tok_load_buffer_kinds(out, f->path, data, data_len, cfg_json, kinds, kinds ? (int32_t)tokens->arr_n : 0, err);
    if (rc) rlhf_error_prefix(err, "%s: tokenizer built from GGUF metadata: ", f->path);
done:
    free(data);
    free(kinds);
    free(cfg_json);
    free(kind);
    free(pre);
    return rc;
}
