/* test_safetensors.c — the safetensors reader and writer: round trips of F32/F16/BF16 (values,
 * shapes, order, metadata, 8-byte header alignment), the half/bfloat16 conversions, and
 * hand-made corrupt files, each refused with the right code and a message naming the file and
 * the tensor. */
#include "src/formats/safetensors.h"

#include <dirent.h>
#include <stdint.h>
#include <ftw.h>
#include <unistd.h>

#include "tests/test_util.h"

/* Removes this test's scratch directory when everything passed (kept for inspection otherwise). */
static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void cleanup_tmpdir(void) {
    if (!test_failures_) nftw(test_tmpdir(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char *tmp_path(const char *name) {
    static char buf[8][4096];
    static int slot;
    char *p = buf[slot++ & 7];
    snprintf(p, sizeof buf[0], "%s/%s", test_tmpdir(), name);
    return p;
}

/* Writes 8-byte length (hlen_override if non-negative, else strlen(header)), header, data. */
static void write_raw(const char *path, const char *header, long long hlen_override, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        perror(path);
        exit(1);
    }
    uint64_t hl = hlen_override >= 0 ? (uint64_t)hlen_override : strlen(header);
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(hl >> (8 * i));
    fwrite(len8, 1, 8, fp);
    fwrite(header, 1, strlen(header), fp);
    if (n) fwrite(data, 1, n, fp);
    fclose(fp);
}

/* Opening must fail with `code` and a message naming the file and (if given) the tensors. */
static void expect_fail(const char *what, const char *path, int code, const char *tensor, const char *tensor2,
                        const char *phrase) {
    safetensors_file *f = (safetensors_file *)1;
    rlhf_error err = {0};
    int rc = safetensors_open(&f, path, &err);
    CHECK(rc == code, "%s: code %d (%s), expected %d: %s", what, rc, rlhf_strerror(rc), code, err.msg);
    CHECK(f == NULL, "%s: handle is NULL after a failed open", what);
    CHECK(strstr(err.msg, path) != NULL, "%s: message names the file: %s", what, err.msg);
    if (tensor) CHECK(strstr(err.msg, tensor) != NULL, "%s: message names tensor %s: %s", what, tensor, err.msg);
    if (tensor2) CHECK(strstr(err.msg, tensor2) != NULL, "%s: message names tensor %s: %s", what, tensor2, err.msg);
    if (phrase) CHECK(strstr(err.msg, phrase) != NULL, "%s: message says \"%s\": %s", what, phrase, err.msg);
    safetensors_close(&f);
}

static void check_round_trip(void) {
    const char *path = tmp_path("rt.safetensors");
    float a[6] = {1.0f, -2.5f, 3.25e-3f, 1e30f, -0.0f, 7.0f};
    /* F16-exact values: normal, the largest, the smallest normal and a subnormal */
    float h[5] = {0.5f, -2.0f, 65504.0f, 6.103515625e-05f, 5.9604644775390625e-08f};
    float b[8], r[100];
    for (int i = 0; i < 8; i++) b[i] = (float)(i - 4) * 0.125f; /* BF16-exact */
    for (int i = 0; i < 100; i++) r[i] = sinf((float)i * 1.7f) * (float)(i + 1); /* rounded on write */
    float scalar = 42.0f;
    safetensors_entry e[] = {
        {.name = "z.first", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "half \"quoted\"\\name", .dtype = SAFETENSORS_DTYPE_F16, .ndim = 1, .shape = {5}, .data = h},
        {.name = "a.bf16", .dtype = SAFETENSORS_DTYPE_BF16, .ndim = 3, .shape = {2, 2, 2}, .data = b},
        {.name = "rounded.f16", .dtype = SAFETENSORS_DTYPE_F16, .ndim = 2, .shape = {10, 10}, .data = r},
        {.name = "rounded.bf16", .dtype = SAFETENSORS_DTYPE_BF16, .ndim = 1, .shape = {100}, .data = r},
        {.name = "scalar", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 0, .data = &scalar},
        {.name = "empty", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 2, .shape = {0, 5}, .data = NULL},
    };
    const int n = (int)(sizeof e / sizeof e[0]);
    rlhf_error err = {0};
    CHECK(safetensors_write(path, e, n, &err) == 0, "write: %s", err.msg);
    safetensors_file *f = NULL;
    CHECK(safetensors_open(&f, path, &err) == 0, "open: %s", err.msg);
    if (!f) return;
    CHECK(f->n_tensors == n, "all %d tensors listed (got %d)", n, f->n_tensors);
    CHECK(safetensors_metadata(f, "format") && strcmp(safetensors_metadata(f, "format"), "pt") == 0, "metadata format is pt");
    /* 8-byte aligned data section: 8 + header length is a multiple of 8 */
    CHECK((f->data - (const unsigned char *)f->map) % 8 == 0, "data section starts 8-byte aligned");
    CHECK(f->data[-1] == ' ' || f->data[-1] == '}', "header padded with spaces");
    /* tensors are stored in the given order */
    const safetensors_tensor *prev = NULL;
    for (int i = 0; i < n; i++) {
        const safetensors_tensor *t = safetensors_find(f, e[i].name);
        CHECK(t != NULL, "tensor %s found", e[i].name);
        if (!t) continue;
        CHECK(t->dtype == e[i].dtype, "%s dtype %s", e[i].name, safetensors_dtype_name(t->dtype));
        CHECK(t->ndim == e[i].ndim, "%s ndim %d", e[i].name, t->ndim);
        for (int d = 0; d < t->ndim; d++) CHECK(t->shape[d] == e[i].shape[d], "%s shape[%d]", e[i].name, d);
        if (prev && t->begin != t->end) CHECK(t->begin >= prev->end, "%s stored after the previous tensor", e[i].name);
        if (t->begin != t->end) prev = t;
        float out[100];
        CHECK(safetensors_read_f32(f, t, out, t->numel, &err) == 0, "read %s: %s", e[i].name, err.msg);
        for (size_t k = 0; k < t->numel; k++) {
            float want = e[i].data[k], got = out[k];
            if (strncmp(e[i].name, "rounded.", 8) == 0) {
                /* round to nearest: half the unit in the last place, 2^-11 (F16), 2^-8 (BF16) */
                double tol = t->dtype == SAFETENSORS_DTYPE_F16 ? 0x1p-11 : 0x1p-8;
                CHECK(fabs((double)got - want) <= tol * fabs(want), "%s[%zu] %g vs %g within %g relative", e[i].name, k, got, want,
                      tol);
            } else {
                CHECK(memcmp(&got, &want, 4) == 0, "%s[%zu] bit-identical (%g vs %g)", e[i].name, k, got, want);
            }
        }
    }
    CHECK(safetensors_find(f, "nope") == NULL, "absent tensor not found");
    float small[2];
    const safetensors_tensor *t0 = safetensors_find(f, "z.first");
    CHECK(safetensors_read_f32(f, t0, small, 2, &err) == RLHF_ERR_SHAPE && strstr(err.msg, "z.first"),
          "reading into a wrong-sized buffer is a shape error naming the tensor: %s", err.msg);
    safetensors_close(&f);
    safetensors_close(&f); /* safe twice */
    CHECK(f == NULL, "close NULLs the handle");

    /* an invalid write leaves the old file untouched and no temporary behind */
    safetensors_entry dup[2] = {e[0], e[0]};
    CHECK(safetensors_write(path, dup, 2, &err) == RLHF_ERR_INVALID && strstr(err.msg, "z.first"), "duplicate names refused: %s",
          err.msg);
    CHECK(safetensors_open(&f, path, &err) == 0 && f->n_tensors == n, "previous file still intact");
    safetensors_close(&f);
    DIR *d = opendir(test_tmpdir());
    struct dirent *de;
    int tmps = 0;
    while (d && (de = readdir(d))) tmps += strstr(de->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    CHECK(tmps == 0, "no temporary files left behind (%d)", tmps);
}

static void check_conversions(void) {
    int bad = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t hh = (uint16_t)i;
        float f = safetensors_f16_to_f32(hh);
        uint16_t back = safetensors_f32_to_f16(f);
        if (isnan(f) ? !((back & 0x7c00) == 0x7c00 && (back & 0x3ff)) : back != hh) bad++;
    }
    CHECK(bad == 0, "every F16 value survives F16 -> F32 -> F16 (%d failures)", bad);
    CHECK(safetensors_f32_to_f16(65520.0f) == 0x7c00, "65520 rounds to +inf in F16");
    CHECK(safetensors_f32_to_f16(65519.0f) == 0x7bff, "65519 rounds to 65504 in F16");
    CHECK(safetensors_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00, "ties round to even (down)");
    CHECK(safetensors_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02, "ties round to even (up)");
    CHECK(safetensors_f32_to_f16(0x1p-25f) == 0, "half the smallest subnormal ties to 0");
    CHECK(safetensors_f32_to_f16(0x1p-25f * 3) == 2, "1.5 subnormal units round to 2");
    for (uint32_t i = 0; i < 65536; i++) {
        float f = safetensors_bf16_to_f32((uint16_t)i);
        uint16_t back = safetensors_f32_to_bf16(f);
        if (!isnan(f) && back != i) bad++;
        if (isnan(f) && !isnan(safetensors_bf16_to_f32(back))) bad++;
    }
    CHECK(bad == 0, "every BF16 value survives BF16 -> F32 -> BF16 (%d failures)", bad);
    CHECK(safetensors_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "BF16 ties round to even");
}

static void check_corrupt(void) {
    const float data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    const char *p;

    p = tmp_path("short.safetensors");
    FILE *fp = fopen(p, "wb");
    fwrite("abc", 1, 3, fp);
    fclose(fp);
    expect_fail("file shorter than 8 bytes", p, RLHF_ERR_FORMAT, NULL, NULL, "too small");

    p = tmp_path("hlen-past-end.safetensors");
    write_raw(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4096, data, 8);
    expect_fail("header length past the end of the file", p, RLHF_ERR_FORMAT, NULL, NULL, "exceeds the file size");

    p = tmp_path("hlen-huge.safetensors");
    write_raw(p, "{}", (long long)1 << 40, NULL, 0);
    expect_fail("absurd header length", p, RLHF_ERR_FORMAT, NULL, NULL, "limit");

    p = tmp_path("not-json.safetensors");
    write_raw(p, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}   ", -1, data, 8);
    expect_fail("invalid JSON", p, RLHF_ERR_FORMAT, NULL, NULL, "not valid JSON");

    p = tmp_path("not-object.safetensors");
    write_raw(p, "[1,2,3]", -1, NULL, 0);
    expect_fail("header not an object", p, RLHF_ERR_FORMAT, NULL, NULL, NULL);

    p = tmp_path("out-of-range.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"far.away\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]}}",
              -1, data, 16);
    expect_fail("offsets out of range", p, RLHF_ERR_FORMAT, "far.away", NULL, "past the end");

    p = tmp_path("overlap.safetensors");
    write_raw(p, "{\"first\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},\"second\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
              -1, data, 16);
    expect_fail("overlapping tensors", p, RLHF_ERR_FORMAT, "first", "second", "overlaps");

    /* a valid file with its last bytes cut off */
    p = tmp_path("truncated.safetensors");
    safetensors_entry e[2] = {
        {.name = "head", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 1, .shape = {4}, .data = data},
        {.name = "tail.weight", .dtype = SAFETENSORS_DTYPE_F32, .ndim = 2, .shape = {2, 2}, .data = data + 4},
    };
    rlhf_error err = {0};
    CHECK(safetensors_write(p, e, 2, &err) == 0, "write: %s", err.msg);
    struct stat st;
    stat(p, &st);
    CHECK(truncate(p, st.st_size - 3) == 0, "truncate");
    expect_fail("truncated data", p, RLHF_ERR_FORMAT, "tail.weight", NULL, "truncated");

    p = tmp_path("dtype-size.safetensors");
    write_raw(p, "{\"wrong.size\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", -1, data, 8);
    expect_fail("bytes disagree with dtype * shape", p, RLHF_ERR_FORMAT, "wrong.size", NULL, "needs 12");

    p = tmp_path("dtype-bf16.safetensors");
    write_raw(p, "{\"bf\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", -1, data, 16);
    expect_fail("BF16 tensor with F32-sized bytes", p, RLHF_ERR_FORMAT, "bf", NULL, "needs 8");

    p = tmp_path("dtype-unknown.safetensors");
    write_raw(p, "{\"q\":{\"dtype\":\"Q4_K\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, data, 8);
    expect_fail("unknown dtype", p, RLHF_ERR_FORMAT, "\"q\"", NULL, "Q4_K");

    p = tmp_path("no-offsets.safetensors");
    write_raw(p, "{\"lonely\":{\"dtype\":\"F32\",\"shape\":[2]}}", -1, data, 8);
    expect_fail("entry without data_offsets", p, RLHF_ERR_FORMAT, "lonely", NULL, "data_offsets");

    p = tmp_path("neg-shape.safetensors");
    write_raw(p, "{\"neg\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", -1, data, 8);
    expect_fail("negative shape", p, RLHF_ERR_FORMAT, "neg", NULL, "shape");

    p = tmp_path("reversed.safetensors");
    write_raw(p, "{\"rev\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", -1, data, 8);
    expect_fail("end before begin", p, RLHF_ERR_FORMAT, "rev", NULL, NULL);

    p = tmp_path("dup.safetensors");
    write_raw(p, "{\"twice\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"twice\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
              -1, data, 16);
    expect_fail("duplicate tensor name", p, RLHF_ERR_FORMAT, "twice", NULL, "twice");

    p = tmp_path("junk.safetensors");
    write_raw(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} xyz", -1, data, 8);
    expect_fail("junk after the JSON", p, RLHF_ERR_FORMAT, NULL, NULL, "junk");

    expect_fail("missing file", tmp_path("does-not-exist.safetensors"), RLHF_ERR_NOT_FOUND, NULL, NULL, NULL);

    /* valid but not convertible: listed, refused on read with the tensor named */
    p = tmp_path("int64.safetensors");
    write_raw(p, "{\"ids\":{\"dtype\":\"I64\",\"shape\":[4],\"data_offsets\":[0,32]}}", -1, data, 32);
    safetensors_file *f = NULL;
    CHECK(safetensors_open(&f, p, &err) == 0, "I64 file opens: %s", err.msg);
    if (f) {
        float out[4];
        int rc = safetensors_read_f32(f, &f->tensors[0], out, 4, &err);
        CHECK(rc == RLHF_ERR_UNSUPPORTED && strstr(err.msg, "ids") && strstr(err.msg, p) && strstr(err.msg, "I64"),
              "I64 read refused naming file, tensor and dtype: %s", err.msg);
        safetensors_close(&f);
    }
}

int main(void) {
    check_round_trip();
    check_conversions();
    check_corrupt();
    cleanup_tmpdir();
    return test_finish("test_safetensors");
}
