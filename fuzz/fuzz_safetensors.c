/* fuzz_safetensors — safetensors_open (8-byte length, JSON header, tensor table, data ranges)
 * and safetensors_read_f32 on every tensor small enough to convert. */
#include "fuzz/fuzz_util.h"
#include "src/formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_memfd_path(data, size);
    safetensors_file *f = NULL;
    rlhf_error err = {0};
    if (safetensors_open(&f, path, &err) != RLHF_OK) return 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const safetensors_tensor *t = &f->tensors[i];
        if (safetensors_find(f, t->name) == NULL) abort(); /* every listed name is findable */
        if (t->numel > (1u << 20)) continue;
        float *out = malloc((t->numel ? t->numel : 1) * sizeof *out);
        if (!out) abort();
        (void)safetensors_read_f32(f, t, out, t->numel, &err);
        free(out);
    }
    for (int i = 0; i < f->n_meta; i++) (void)safetensors_metadata(f, f->meta_keys[i]);
    safetensors_close(&f);
    return 0;
}
