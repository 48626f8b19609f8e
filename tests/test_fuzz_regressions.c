/* test_fuzz_regressions — every crash the libFuzzer harnesses of fuzz/ found, replayed through
 * the same entry point (the input as bytes here, minimised by hand where that kept the crash),
 * with the answer the parser must give now: a clean error, never a crash. Under the sanitizer
 * build these fail loudly if the bug comes back. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/formats/gguf.h"
#include "src/formats/safetensors.h"
#include "src/tok/tokenizer.h"
#include "tests/test_util.h"

/* Writes n bytes to a fresh file in the test's scratch directory; returns its path (static). */
static const char *scratch_file(const char *name, const void *data, size_t n) {
    static char path[4200];
    snprintf(path, sizeof path, "%s/%s", test_tmpdir(), name);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(data, 1, n, fp) != n || fclose(fp) != 0) {
        perror(path);
        exit(1);
    }
    return path;
}

/* A safetensors file: 8-byte little-endian header length, then the header (no tensor data). */
static const char *safetensors_bytes(const char *name, const char *header) {
    static unsigned char buf[512];
    uint64_t n = strlen(header);
    memcpy(buf, &n, 8); /* little-endian host, as the format assumes */
    memcpy(buf + 8, header, n);
    return scratch_file(name, buf, 8 + n);
}

/* fuzz_safetensors, crash 08a0bcfe: "__metadata__" twice. The second object replaced the key
 * arrays but the count went on from the first, so a smaller second object was written past its
 * end (heap overflow) and a lookup read a NULL key. A repeated key is now refused, as a
 * repeated tensor name already was. */
static void test_safetensors_metadata_twice(void) {
    static const char *const headers[] = {
        "{\"__metadata__\":{\"a\":\"b\"},\"__metadata__\":{\"c\":\"d\"}}",
        "{\"__metadata__\":{\"a\":\"b\",\"c\":\"d\",\"e\":\"f\"},\"__metadata__\":{\"g\":\"h\"}}",
    };
    for (size_t k = 0; k < sizeof headers / sizeof *headers; k++) {
        const char *path = safetensors_bytes("meta_twice.safetensors", headers[k]);
        safetensors_file *f = NULL;
        rlhf_error err = {0};
        int rc = safetensors_open(&f, path, &err);
        CHECK(rc == RLHF_ERR_FORMAT, "case %zu: rc %d (%s)", k, rc, err.msg);
        CHECK(f == NULL, "case %zu: no handle on error", k);
        CHECK(strstr(err.msg, "__metadata__") != NULL, "case %zu: message names the key: %s", k, err.msg);
        safetensors_close(&f);
        unlink(path);
    }
}

/* GGUF bytes: magic, version 3, one tensor, no metadata, the tensor info "t" (1 dim of 32, ggml
 * type `type`, `offset`), zero padding to 32 and 32 bytes of data. */
static const char *gguf_one_tensor(uint32_t type, uint64_t offset) {
    unsigned char buf[128] = {0};
    size_t n = 0;
#define PUT(x) (memcpy(buf + n, &(x), sizeof(x)), n += sizeof(x))
    uint32_t version = 3, n_dims = 1;
    uint64_t n_tensors = 1, n_kv = 0, name_len = 1, ne0 = 32;
    memcpy(buf, "GGUF", 4);
    n = 4;
    PUT(version);
    PUT(n_tensors);
    PUT(n_kv);
    PUT(name_len);
    buf[n++] = 't';
    PUT(n_dims);
    PUT(ne0);
    PUT(type);
    PUT(offset);
#undef PUT
    n = (n + 31) / 32 * 32 + 32;
    return scratch_file("one_tensor.gguf", buf, n);
}

/* fuzz_gguf, crash 6e13952a: a tensor whose byte size is unknown (a type this reader lacks, or
 * a block format whose rows are not whole blocks) had its offset left unchecked, so reading it
 * formed a pointer far past the mapping (UBSan: pointer overflow) before refusing the type.
 * The offset of every tensor must now lie inside the data section. */
static void test_gguf_offset_unchecked(void) {
    static const struct { uint32_t type; uint64_t offset; } cases[] = {
        {99, 0xffffffffffffff00ull}, /* unknown type */
        {2, (uint64_t)1 << 62},      /* Q4_0 needs rows of 32: fine here, but far away */
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const char *path = gguf_one_tensor(cases[k].type, cases[k].offset);
        gguf_file *f = NULL;
        rlhf_error err = {0};
        int rc = gguf_open(&f, path, &err);
        CHECK(rc == RLHF_ERR_FORMAT, "case %zu: rc %d (%s)", k, rc, err.msg);
        CHECK(f == NULL, "case %zu: no handle on error", k);
        CHECK(strstr(err.msg, "'t'") != NULL, "case %zu: message names the tensor: %s", k, err.msg);
        gguf_close(&f);
        unlink(path);
    }
    /* an unknown type inside the file still opens (listed, refused by name when read) */
    const char *path = gguf_one_tensor(99, 0);
    gguf_file *f = NULL;
    rlhf_error err = {0};
    CHECK(gguf_open(&f, path, &err) == RLHF_OK, "unknown type at offset 0 opens: %s", err.msg);
    gguf_close(&f);
    unlink(path);
}

/* fuzz_gpt2_bpe, UBSan "applying zero offset to null pointer": an encoder.json whose only piece
 * is "" made the first text append zero bytes to a text store not yet allocated (NULL + 0 in
 * text_byte_level). An empty piece is odd but harmless; the load must simply not do pointer
 * arithmetic on NULL. */
static void test_gpt2_empty_piece(void) {
    char dir[4200], enc[4300], bpe[4300];
    snprintf(dir, sizeof dir, "%s/gpt2-empty", test_tmpdir());
    CHECK(mkdir(dir, 0700) == 0, "mkdir %s", dir);
    snprintf(enc, sizeof enc, "%s/encoder.json", dir);
    snprintf(bpe, sizeof bpe, "%s/vocab.bpe", dir);
    FILE *fp = fopen(enc, "w");
    CHECK(fp && fputs("{\"\": 0}", fp) >= 0 && fclose(fp) == 0, "write %s", enc);
    fp = fopen(bpe, "w");
    CHECK(fp && fputs("#version: 0.2\n", fp) >= 0 && fclose(fp) == 0, "write %s", bpe);
    tokenizer *t = NULL;
    rlhf_error err = {0};
    int rc = tok_load(&t, enc, &err);
    /* Either answer is acceptable (a clean refusal or a tokenizer); a sanitizer report is not. */
    if (rc == RLHF_OK) tok_close(&t);
    CHECK(rc == RLHF_OK || err.msg[0] != 0, "refusal without a message");
    unlink(enc);
    unlink(bpe);
    rmdir(dir);
}

/* fuzz_tokenizer_json, timeout: a 35 KB tokenizer.json whose vocabulary has a few entries but
 * one id near the 16M bound made the loader size every per-id table (and the merge index, 128
 * MB set byte by byte) by that id: seconds and hundreds of MB for nothing. Real vocabularies
 * have at most a few hundred thousand ids and few holes; ids far beyond the entries are now
 * refused. */
static void test_tokenizer_sparse_ids(void) {
    const char *json = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 15000000}, "
                       "\"merges\": [\"a b\"]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, "
                       "\"decoder\": {\"type\": \"ByteLevel\"}}";
    tokenizer *t = NULL;
    rlhf_error err = {0};
    int rc = tok_load_buffer(&t, "sparse.json", json, strlen(json), NULL, &err);
    CHECK(rc == RLHF_ERR_FORMAT && !t && strstr(err.msg, "15000000"), "a vocabulary with an id far beyond its entries is refused: %s",
          rc ? err.msg : "loaded");
    if (t) tok_close(&t);
}

int main(void) {
    test_safetensors_metadata_twice();
    test_gguf_offset_unchecked();
    test_gpt2_empty_piece();
    test_tokenizer_sparse_ids();
    rmdir(test_tmpdir());
    return test_finish("fuzz regressions");
}
