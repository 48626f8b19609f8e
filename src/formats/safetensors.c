/* safetensors.c — the safetensors reader (mmap + validated header) and the atomic writer.
 *
 * The reader trusts nothing in the file: every number in the header is checked against the
 * file size before any tensor byte is touched, so a truncated or hand-edited file gives an
 * error naming the file and tensor instead of a read past the mapping. The mapping is private
 * and read-only; if another process truncates the file while it is open, reads can fault
 * (SIGBUS) — the same contract as every mmap-based loader. */
#include "src/formats/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/core/fileio.h"

/* ---- dtypes ---- */

static const struct {
    const char *name;
    size_t size;
} g_dtypes[SAFETENSORS_DTYPE_COUNT] = {
    [SAFETENSORS_DTYPE_F32] = {"F32", 4},      [SAFETENSORS_DTYPE_F16] = {"F16", 2},
    [SAFETENSORS_DTYPE_BF16] = {"BF16", 2},    [SAFETENSORS_DTYPE_F64] = {"F64", 8},
    [SAFETENSORS_DTYPE_I64] = {"I64", 8},      [SAFETENSORS_DTYPE_I32] = {"I32", 4},
    [SAFETENSORS_DTYPE_I16] = {"I16", 2},      [SAFETENSORS_DTYPE_I8] = {"I8", 1},
    [SAFETENSORS_DTYPE_U64] = {"U64", 8},      [SAFETENSORS_DTYPE_U32] = {"U32", 4},
    [SAFETENSORS_DTYPE_U16] = {"U16", 2},      [SAFETENSORS_DTYPE_U8] = {"U8", 1},
    [SAFETENSORS_DTYPE_BOOL] = {"BOOL", 1},    [SAFETENSORS_DTYPE_F8_E4M3] = {"F8_E4M3", 1},
    [SAFETENSORS_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
};

const char *safetensors_dtype_name(safetensors_dtype dtype) {
    return (unsigned)dtype < SAFETENSORS_DTYPE_COUNT ? g_dtypes[dtype].name : "?";
}

size_t safetensors_dtype_size(safetensors_dtype dtype) {
    return (unsigned)dtype < SAFETENSORS_DTYPE_COUNT ? g_dtypes[dtype].size : 0;
}

static int dtype_from_name(const char *s, safetensors_dtype *out) {
    for (int i = 0; i < SAFETENSORS_DTYPE_COUNT; i++)
        if (strcmp(s, g_dtypes[i].name) == 0) {
            *out = (safetensors_dtype)i;
            return 1;
        }
    return 0;
}

/* ---- float conversions ---- */

float safetensors_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in float32 */
        float v = (float)man * 0x1p-24f;
        memcpy(&bits, &v, 4);
        bits |= sign;
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t safetensors_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu)); /* NaN stays NaN */
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) {
        /* below the smallest normal half (2^-14): a multiple of 2^-24; nearbyintf rounds to
         * nearest even in the default mode, and 1024 correctly becomes the smallest normal */
        float a;
        memcpy(&a, &ax, 4);
        return (uint16_t)(sign | (uint16_t)nearbyintf(a * 0x1p24f));
    }
    uint32_t h = (((ax >> 23) - 112u) << 10) | ((ax >> 13) & 0x3ffu);
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* carry into the exponent is right */
    return (uint16_t)(sign | h);
}

float safetensors_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void safetensors_f16_array_to_f32(float *out, const unsigned char *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        out[i] = safetensors_f16_to_f32(h);
    }
}

void safetensors_bf16_array_to_f32(float *out, const unsigned char *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        out[i] = safetensors_bf16_to_f32(h);
    }
}

uint16_t safetensors_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* ---- reading ---- */

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* A JSON number that is a whole number in [0, 2^53]. */
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != floor(d)) return 0;
    *out = (uint64_t)d;
    return 1;
}

static int parse_entry(const safetensors_file *f, const cJSON *j, safetensors_tensor *t, rlhf_error *err) {
    const char *p = f->path, *name = j->string;
    if (!cJSON_IsObject(j)) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: tensor \"%s\": entry is not a JSON object", p, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!cJSON_IsString(jd)) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: tensor \"%s\": missing or non-string \"dtype\"", p, name);
    if (!dtype_from_name(jd->valuestring, &t->dtype))
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: tensor \"%s\": unknown dtype \"%s\"", p, name, jd->valuestring);
    if (!cJSON_IsArray(js)) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: tensor \"%s\": missing or non-array \"shape\"", p, name);
    int nd = cJSON_GetArraySize(js);
    if (nd > SAFETENSORS_MAX_DIMS)
        return rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: tensor \"%s\": %d dimensions (at most %d supported)", p, name, nd,
                           SAFETENSORS_MAX_DIMS);
    t->ndim = nd;
    /* numel * dtype size must not overflow: keep the running byte count below 2^62 */
    uint64_t numel = 1, limit = (uint64_t)1 << 62;
    int i = 0;
    for (const cJSON *d = js->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_uint(d, &v))
            return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: tensor \"%s\": shape entry %d is not a non-negative integer", p, name, i);
        t->shape[i] = (int64_t)v;
        if (v && numel > limit / v)
            return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: tensor \"%s\": shape is impossibly large", p, name);
        numel *= v;
    }
    if (numel > SIZE_MAX / 8) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: tensor \"%s\": shape is impossibly large", p, name);
    t->numel = (size_t)numel;
    uint64_t b, e;
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 || !json_uint(jo->child, &b) || !json_uint(jo->child->next, &e))
        return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: tensor \"%s\": \"data_offsets\" must be two non-negative integers", p, name);
    t->begin = b;
    t->end = e;
    if (e < b) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: tensor \"%s\": data_offsets [%llu, %llu] end before they begin", p, name,
                                  (unsigned long long)b, (unsigned long long)e);
    uint64_t need = numel * g_dtypes[t->dtype].size;
    if (e - b != need)
        return rlhf_errorf(err, RLHF_ERR_FORMAT,
                           "%s: tensor \"%s\": data_offsets [%llu, %llu] hold %llu bytes but dtype %s with %llu elements needs %llu",
                           p, name, (unsigned long long)b, (unsigned long long)e, (unsigned long long)(e - b),
                           g_dtypes[t->dtype].name, (unsigned long long)numel, (unsigned long long)need);
    if (e > f->data_size)
        return rlhf_errorf(err, RLHF_ERR_FORMAT,
                           "%s: tensor \"%s\": data_offsets [%llu, %llu] extend past the end of the data section (%llu bytes): "
                           "file truncated?",
                           p, name, (unsigned long long)b, (unsigned long long)e, (unsigned long long)f->data_size);
    return RLHF_OK;
}

static int cmp_by_offset(const void *a, const void *b) {
    const safetensors_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int cmp_name_ptr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int parse_metadata(safetensors_file *f, const cJSON *j, rlhf_error *err) {
    /* cJSON keeps duplicate keys; a second "__metadata__" would replace the arrays the count
     * already walked into, so it is refused like a repeated tensor name */
    if (f->meta_keys) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: \"__metadata__\" appears twice in the header", f->path);
    if (cJSON_IsNull(j)) return RLHF_OK;
    if (!cJSON_IsObject(j)) return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: \"__metadata__\" is not a JSON object", f->path);
    int n = cJSON_GetArraySize(j);
    f->meta_keys = calloc((size_t)n + 1, sizeof(char *));
    f->meta_values = calloc((size_t)n + 1, sizeof(char *));
    if (!f->meta_keys || !f->meta_values) return rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", f->path);
    for (const cJSON *m = j->child; m; m = m->next) {
        if (!cJSON_IsString(m))
            return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: \"__metadata__\" value of \"%s\" is not a string", f->path, m->string);
        f->meta_keys[f->n_meta] = dup_str(m->string);
        f->meta_values[f->n_meta] = dup_str(m->valuestring);
        if (!f->meta_keys[f->n_meta] || !f->meta_values[f->n_meta]) {
            f->n_meta++;
            return rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", f->path);
        }
        f->n_meta++;
    }
    return RLHF_OK;
}

int safetensors_open(safetensors_file **out, const char *path, rlhf_error *err) {
    *out = NULL;
    int rc = RLHF_OK, fd = -1;
    cJSON *root = NULL;
    char **names = NULL;
    safetensors_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = dup_str(path))) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        rc = rlhf_errorf(err, e == ENOENT ? RLHF_ERR_NOT_FOUND : RLHF_ERR_IO, "%s: cannot open: %s", path, strerror(e));
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: not a regular file", path);
        goto fail;
    }
    if (st.st_size < 8) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: %lld bytes is too small for a safetensors header", path, (long long)st.st_size);
        goto fail;
    }
    f->map_size = (size_t)st.st_size;
    void *map = mmap(NULL, f->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
        goto fail;
    }
    f->map = map;
    close(fd);
    fd = -1;

    const unsigned char *base = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | base[i];
    uint64_t fsize = (uint64_t)f->map_size;
    if (hlen > SAFETENSORS_MAX_HEADER) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: header length %llu exceeds the format's limit of %llu bytes: not a safetensors file?",
                         path, (unsigned long long)hlen, (unsigned long long)SAFETENSORS_MAX_HEADER);
        goto fail;
    }
    if (hlen > fsize - 8) {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: header length %llu exceeds the file size (%llu bytes): file truncated?", path,
                         (unsigned long long)hlen, (unsigned long long)fsize);
        goto fail;
    }
    const char *hdr = (const char *)base + 8;
    if (hlen < 2 || hdr[0] != '{') {
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: header does not start with a JSON object: not a safetensors file?", path);
        goto fail;
    }
    f->data = base + 8 + hlen;
    f->data_size = fsize - 8 - hlen;

    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        size_t at = end && end >= hdr ? (size_t)(end - hdr) : 0;
        rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: header is not valid JSON (near byte %zu of %llu)", path, at,
                         (unsigned long long)hlen);
        goto fail;
    }
    for (const char *q = end; q < hdr + hlen; q++) {
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r' && *q != '\0') {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: header has junk after its JSON object (byte %zu)", path, (size_t)(q - hdr));
            goto fail;
        }
    }

    int n = 0;
    for (const cJSON *c = root->child; c; c = c->next) n += strcmp(c->string, "__metadata__") != 0;
    f->tensors = calloc((size_t)n + 1, sizeof *f->tensors);
    names = calloc((size_t)n + 1, sizeof *names);
    if (!f->tensors || !names) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            if ((rc = parse_metadata(f, c, err))) goto fail;
            continue;
        }
        safetensors_tensor *t = &f->tensors[f->n_tensors];
        if (!(t->name = dup_str(c->string))) {
            rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        f->n_tensors++;
        if ((rc = parse_entry(f, c, t, err))) goto fail;
    }

    /* cJSON keeps duplicate keys; a file naming a tensor twice is ambiguous, so refuse it */
    for (int i = 0; i < f->n_tensors; i++) names[i] = f->tensors[i].name;
    qsort(names, (size_t)f->n_tensors, sizeof *names, cmp_name_ptr);
    for (int i = 1; i < f->n_tensors; i++)
        if (strcmp(names[i - 1], names[i]) == 0) {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: tensor \"%s\" appears twice in the header", path, names[i]);
            goto fail;
        }

    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_by_offset);
    const safetensors_tensor *prev = NULL;
    for (int i = 0; i < f->n_tensors; i++) {
        const safetensors_tensor *t = &f->tensors[i];
        if (t->begin == t->end) continue; /* empty tensors occupy no bytes */
        if (prev && t->begin < prev->end) {
            rc = rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: tensor \"%s\" (bytes [%llu, %llu]) overlaps tensor \"%s\" (bytes [%llu, %llu])",
                             path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end, prev->name,
                             (unsigned long long)prev->begin, (unsigned long long)prev->end);
            goto fail;
        }
        if (!prev || t->end > prev->end) prev = t;
    }
    free(names);
    cJSON_Delete(root);
    *out = f;
    return RLHF_OK;
fail:
    if (fd >= 0) close(fd);
    free(names);
    cJSON_Delete(root);
    safetensors_close(&f);
    return rc;
}

void safetensors_close(safetensors_file **fp) {
    if (!fp || !*fp) return;
    safetensors_file *f = *fp;
    if (f->map) munmap(f->map, f->map_size);
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->path);
    free(f);
    *fp = NULL;
}

const safetensors_tensor *safetensors_find(const safetensors_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *safetensors_metadata(const safetensors_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

int safetensors_read_f32(const safetensors_file *f, const safetensors_tensor *t, float *out, size_t n, rlhf_error *err) {
    if (n != t->numel)
        return rlhf_errorf(err, RLHF_ERR_SHAPE, "%s: tensor \"%s\" has %zu elements, %zu expected", f->path, t->name, t->numel, n);
    const unsigned char *src = f->data + t->begin;
    switch (t->dtype) {
    case SAFETENSORS_DTYPE_F32:
        if (n) memcpy(out, src, n * sizeof(float));
        return RLHF_OK;
    case SAFETENSORS_DTYPE_F16:
        safetensors_f16_array_to_f32(out, src, n);
        return RLHF_OK;
    case SAFETENSORS_DTYPE_BF16:
        safetensors_bf16_array_to_f32(out, src, n);
        return RLHF_OK;
    case SAFETENSORS_DTYPE_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            out[i] = (float)d;
        }
        return RLHF_OK;
    default:
        return rlhf_errorf(err, RLHF_ERR_UNSUPPORTED, "%s: tensor \"%s\" has dtype %s; only F32, F16, BF16 and F64 can be read", f->path,
                           t->name, safetensors_dtype_name(t->dtype));
    }
}

/* ---- writing ---- */

typedef struct {
    char *s;
    size_t len, cap;
    int oom;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_puts(strbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_printf(strbuf *b, const char *fmt, unsigned long long v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, fmt, v);
    sb_add(b, tmp, (size_t)n);
}

static void sb_json_string(strbuf *b, const char *s) {
    sb_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            sb_add(b, esc, 2);
        } else if (*p < 0x20) {
            sb_printf(b, "\\u%04llx", *p);
        } else {
            sb_add(b, (const char *)p, 1);
        }
    }
    sb_add(b, "\"", 1);
}

static int entry_numel(const safetensors_entry *e, uint64_t *numel) {
    uint64_t n = 1;
    if (e->ndim < 0 || e->ndim > SAFETENSORS_MAX_DIMS) return 0;
    for (int d = 0; d < e->ndim; d++) {
        if (e->shape[d] < 0) return 0;
        n *= (uint64_t)e->shape[d];
    }
    *numel = n;
    return 1;
}

/* Writes `n` floats converted to `dtype` in chunks so no full-size staging copy is needed. */
static int write_converted(FILE *fp, const float *src, size_t n, safetensors_dtype dtype) {
    if (dtype == SAFETENSORS_DTYPE_F32) return n == 0 || fwrite(src, sizeof(float), n, fp) == n;
    uint16_t chunk[4096];
    for (size_t i = 0; i < n;) {
        size_t k = n - i < 4096 ? n - i : 4096;
        for (size_t j = 0; j < k; j++)
            chunk[j] = dtype == SAFETENSORS_DTYPE_F16 ? safetensors_f32_to_f16(src[i + j]) : safetensors_f32_to_bf16(src[i + j]);
        if (fwrite(chunk, 2, k, fp) != k) return 0;
        i += k;
    }
    return 1;
}

int safetensors_write_stream(FILE *fp, const char *path, const safetensors_entry *entries, int n, rlhf_error *err) {
    strbuf hb = {0};
    int rc = RLHF_OK;
    sb_puts(&hb, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const safetensors_entry *e = &entries[i];
        uint64_t numel;
        if (!e->name || !strcmp(e->name, "__metadata__") || !entry_numel(e, &numel) ||
            (e->dtype != SAFETENSORS_DTYPE_F32 && e->dtype != SAFETENSORS_DTYPE_F16 && e->dtype != SAFETENSORS_DTYPE_BF16) ||
            (numel && !e->data)) {
            rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s: tensor \"%s\": invalid name, shape, dtype or data for writing", path,
                             e->name ? e->name : "(null)");
            goto done;
        }
        for (int k = 0; k < i; k++)
            if (strcmp(entries[k].name, e->name) == 0) {
                rc = rlhf_errorf(err, RLHF_ERR_INVALID, "%s: tensor \"%s\" given twice", path, e->name);
                goto done;
            }
        uint64_t bytes = numel * g_dtypes[e->dtype].size;
        sb_add(&hb, ",", 1);
        sb_json_string(&hb, e->name);
        sb_puts(&hb, ":{\"dtype\":\"");
        sb_puts(&hb, g_dtypes[e->dtype].name);
        sb_puts(&hb, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) sb_printf(&hb, d ? ",%llu" : "%llu", (unsigned long long)e->shape[d]);
        sb_printf(&hb, "],\"data_offsets\":[%llu", offset);
        sb_printf(&hb, ",%llu]}", offset + bytes);
        offset += bytes;
    }
    sb_add(&hb, "}", 1);
    /* pad with spaces so the data section starts 8-byte aligned (8 + len is a multiple of 8) */
    while (!hb.oom && hb.len % 8) sb_add(&hb, " ", 1);
    if (hb.oom) {
        rc = rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory building the header", path);
        goto done;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hb.len >> (8 * i));
    if (fwrite(len8, 1, 8, fp) != 8 || fwrite(hb.s, 1, hb.len, fp) != hb.len) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: writing the header failed: %s", path, strerror(errno));
        goto done;
    }
    for (int i = 0; i < n; i++) {
        uint64_t numel = 0;
        entry_numel(&entries[i], &numel);
        if (!write_converted(fp, entries[i].data, (size_t)numel, entries[i].dtype)) {
            rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: writing tensor \"%s\" failed: %s", path, entries[i].name, strerror(errno));
            goto done;
        }
    }
done:
    free(hb.s);
    return rc;
}

int safetensors_write(const char *path, const safetensors_entry *entries, int n, rlhf_error *err) {
    file_atomic fa;
    int rc = file_atomic_open(&fa, path, err);
    if (rc) return rc;
    if ((rc = safetensors_write_stream(fa.fp, path, entries, n, err))) {
        file_atomic_abort(&fa);
        return rc;
    }
    return file_atomic_commit(&fa, err);
}
