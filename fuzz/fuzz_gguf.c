/* fuzz_gguf — gguf_open (header, metadata, tensor infos, alignment), the typed metadata getters
 * on every key, gguf_tensor_read_f32 (so the dequantisers of src/model/quants.c) on every tensor
 * of at most 64 Ki values, and gguf_load_tokenizer with an encode/decode of a fixed text. */
#include "fuzz/fuzz_util.h"
#include "src/formats/gguf.h"

static void use_tokenizer(const tokenizer *t) {
    static const char text[] = "Hello world! <|endoftext|> 12345 \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80\n";
    tok_ids ids = {0};
    rlhf_error err = {0};
    if (tok_encode(t, text, sizeof text - 1, TOK_ENCODE_ALLOW_SPECIAL, &ids, &err) == RLHF_OK) {
        char *back = NULL;
        size_t len;
        if (tok_decode(t, ids.ids, ids.n, &back, &len, &err) == RLHF_OK) free(back);
    }
    tok_ids_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_memfd_path(data, size);
    gguf_file *f = NULL;
    rlhf_error err = {0};
    if (gguf_open(&f, path, &err) != RLHF_OK) return 0;
    for (int64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        char key[256];
        size_t n = kv->key_len < sizeof key - 1 ? kv->key_len : sizeof key - 1;
        memcpy(key, kv->key, n);
        key[n] = '\0';
        int64_t iv;
        double dv;
        char *sv = NULL;
        (void)gguf_get_int(f, key, &iv, &err);
        (void)gguf_get_float(f, key, &dv, &err);
        if (gguf_get_string(f, key, &sv, &err) == RLHF_OK) free(sv);
        if (kv->type == GGUF_TYPE_ARRAY && kv->arr_type == GGUF_TYPE_STRING) {
            for (uint64_t k = 0; k < kv->arr_n && k < 64; k++) {
                const char *s;
                size_t len;
                if (gguf_array_string(kv, k, &s, &len) == RLHF_OK && len) (void)s[len - 1];
            }
        }
    }
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        if (t->numel > 65536) continue;
        float *out = malloc((t->numel ? t->numel : 1) * sizeof *out);
        if (!out) abort();
        (void)gguf_tensor_read_f32(f, t, out, &err);
        free(out);
    }
    tokenizer *tok = NULL;
    if (gguf_load_tokenizer(&tok, f, &err) == RLHF_OK) {
        use_tokenizer(tok);
        tok_close(&tok);
    }
    gguf_close(&f);
    return 0;
}
