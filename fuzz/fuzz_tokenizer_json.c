/* fuzz_tokenizer_json — tok_load_buffer: a Hugging Face tokenizer.json (BPE, SentencePiece-BPE,
 * added tokens, normalizers, Split pre-tokenizer regexes through PCRE2) or a llama2.c
 * tokenizer.bin, then encode and decode of fixed texts. Input: the file, optionally followed by
 * a NUL byte and tokenizer_config.json text (BOS/EOS/PAD names). */
#include "fuzz/fuzz_util.h"
#include "src/tok/tokenizer.h"

static void use_tokenizer(const tokenizer *t) {
    static const char *const texts[] = {
        "Hello world! How's it going?  \t\n\n 12345 x=y+1;",
        "<|endoftext|><s></s><|begin_of_text|><|im_start|>user\n\xc3\xa9t\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80",
        "\xff\xfe bad utf8 \xc3",
    };
    tok_ids ids = {0};
    rlhf_error err = {0};
    for (size_t k = 0; k < sizeof texts / sizeof *texts; k++) {
        unsigned flags = k == 1 ? TOK_ENCODE_ALLOW_SPECIAL : 0;
        if (tok_encode(t, texts[k], strlen(texts[k]), flags, &ids, &err) != RLHF_OK) continue;
        char *back = NULL;
        size_t len;
        if (tok_decode(t, ids.ids, ids.n, &back, &len, &err) == RLHF_OK) free(back);
        tok_stream s;
        if (tok_stream_init(&s, t, 0, &err) == RLHF_OK) {
            const char *piece;
            for (size_t i = 0; i < ids.n; i++) (void)tok_stream_push(&s, ids.ids[i], &piece, &len, &err);
            (void)tok_stream_flush(&s, &piece, &len, &err);
            tok_stream_free(&s);
        }
    }
    /* every id decodes on its own (special tokens as their text) */
    int v = tok_vocab_size(t);
    for (int32_t id = 0; id < v && id < 4096; id++) {
        char *back = NULL;
        size_t len;
        (void)tok_piece(t, id);
        if (tok_decode(t, &id, 1, &back, &len, &err) == RLHF_OK) free(back);
    }
    tok_ids_free(&ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, '\0', size);
    size_t file_len = size;
    char *config = NULL;
    /* a llama2.c tokenizer.bin is binary: only a JSON file carries a config after a NUL */
    if (nul && size && data[0] == '{') {
        file_len = (size_t)(nul - data);
        config = fuzz_strndup(nul + 1, size - file_len - 1);
    }
    uint8_t *file = malloc(file_len ? file_len : 1); /* exact size: over-reads are caught */
    if (!file) abort();
    memcpy(file, data, file_len);
    tokenizer *t = NULL;
    rlhf_error err = {0};
    if (tok_load_buffer(&t, "tokenizer.json", file, file_len, config, &err) == RLHF_OK) {
        use_tokenizer(t);
        tok_close(&t);
    }
    free(file);
    free(config);
    return 0;
}
