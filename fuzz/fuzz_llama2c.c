/* fuzz_llama2c — llama2c_load: a llama2.c legacy checkpoint (7-int header, float32 tensors) in
 * both RoPE layouts. */
#include "fuzz/fuzz_util.h"
#include "src/formats/llama2c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_memfd_path(data, size);
    model m;
    rlhf_error err = {0};
    model_rope_layout layout = (size & 1) ? MODEL_ROPE_INTERLEAVED : MODEL_ROPE_HALF;
    if (llama2c_load(&m, path, layout, &err) == RLHF_OK) model_free(&m);
    return 0;
}
