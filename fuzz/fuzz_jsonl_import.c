/* fuzz_jsonl_import — store_import_jsonl (`rlhf db import`) into a fresh in-memory store. The
 * first byte picks the format (0 TRL, 1 HH, 2 SFT: byte % 3) and bit 2 of it strict mode; the
 * rest is the JSONL file. A small line limit lets the too-long path be reached. */
#include "fuzz/fuzz_util.h"
#include "feedback/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    store_import_params params = {0};
    params.format = (store_format)(data[0] % 3);
    params.strict = (data[0] >> 2) & 1;
    params.max_line_bytes = (data[0] & 0x80) ? 256 : 0;
    const char *path = fuzz_memfd_path(data + 1, size - 1);
    store *s = NULL;
    rlhf_error err = {0};
    if (store_open(&s, ":memory:", &err) != RLHF_OK) abort();
    store_import_report rep;
    int rc = store_import_jsonl(s, path, &params, &rep, &err);
    /* the report adds up whatever happened */
    if (rep.n_issues > rep.n_issues_total) abort();
    if (rc == RLHF_OK && rep.n_records == 0) abort();
    store_import_report_free(&rep);
    store_close(&s);
    return 0;
}
