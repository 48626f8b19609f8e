/* fuzz_gpt2_bpe — tok_load on GPT-2's encoder.json + vocab.bpe (+ tokenizer_config.json) as
 * OpenAI shipped them. Input: encoder.json, NUL, vocab.bpe, and optionally NUL and
 * tokenizer_config.json. The files go to a private temporary directory (tok_load needs
 * vocab.bpe beside encoder.json), removed when the process exits. */
#include <sys/stat.h>

#include "fuzz/fuzz_util.h"
#include "src/tok/tokenizer.h"

static char dir[64];
static char enc_path[96], bpe_path[96], cfg_path[128];

static void cleanup(void) {
    unlink(enc_path);
    unlink(bpe_path);
    unlink(cfg_path);
    rmdir(dir);
}

static void put(const char *path, const uint8_t *data, size_t size) {
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(data, 1, size, fp) != size || fclose(fp) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/fuzz-gpt2-XXXXXX", tmp && strlen(tmp) < 40 ? tmp : "/tmp");
        if (!mkdtemp(dir)) abort();
        snprintf(enc_path, sizeof enc_path, "%s/encoder.json", dir);
        snprintf(bpe_path, sizeof bpe_path, "%s/vocab.bpe", dir);
        snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", dir);
        atexit(cleanup);
    }
    const uint8_t *nul = memchr(data, '\0', size);
    if (!nul) return 0;
    size_t enc_len = (size_t)(nul - data);
    const uint8_t *bpe = nul + 1, *end = data + size;
    const uint8_t *nul2 = memchr(bpe, '\0', (size_t)(end - bpe));
    put(enc_path, data, enc_len);
    put(bpe_path, bpe, (size_t)((nul2 ? nul2 : end) - bpe));
    if (nul2)
        put(cfg_path, nul2 + 1, (size_t)(end - nul2 - 1));
    else
        unlink(cfg_path);
    tokenizer *t = NULL;
    rlhf_error err = {0};
    if (tok_load(&t, enc_path, &err) == RLHF_OK) {
        static const char text[] = "Hello world! It's 2024 <|endoftext|>  \n\n\xc3\xa9\xf0\x9f\x98\x80";
        tok_ids ids = {0};
        if (tok_encode(t, text, sizeof text - 1, TOK_ENCODE_ALLOW_SPECIAL, &ids, &err) == RLHF_OK) {
            char *back = NULL;
            size_t len;
            if (tok_decode(t, ids.ids, ids.n, &back, &len, &err) == RLHF_OK) free(back);
        }
        tok_ids_free(&ids);
        tok_close(&t);
    }
    return 0;
}
