/* llama2c.h — import of llama2.c legacy checkpoints (the `.bin` files of run.c).
 *
 * The format: a header of 7 little-endian int32 (dim, hidden_dim, n_layers, n_heads,
 * n_kv_heads, vocab_size, seq_len; a negative vocab_size means an unshared classifier follows),
 * then float32 tensors: token_embedding (V, C), rms_att (L, C), wq (L, NH*HS, C),
 * wk (L, NKV*HS, C), wv (L, NKV*HS, C), wo (L, C, NH*HS), rms_ffn (L, C), w1 (L, F, C),
 * w2 (L, C, F), w3 (L, F, C), rms_final (C), two RoPE tables of seq_len*HS/2 floats (skipped:
 * RoPE is computed), and the classifier (V, C) when unshared. Matrices are [out, in] like
 * Hugging Face's Linear weights; w1 is gate_proj, w3 up_proj, w2 down_proj.
 *
 * llama2.c rotates adjacent pairs (2i, 2i+1). With MODEL_ROPE_HALF the rows of wq and wk are
 * permuted within each head (row 2i -> i, row 2i+1 -> i + HS/2, as transformers' own
 * convert_llama_weights_to_hf does) so the half-split rotation computes exactly the same
 * attention scores and the model is a plain Hugging Face Llama; with MODEL_ROPE_INTERLEAVED
 * the weights are kept as stored and the config records the interleaved layout. */
#ifndef RLHF_LLAMA2C_H
#define RLHF_LLAMA2C_H

#include "src/core/error.h"
#include "src/model/model.h"

/* Reads the llama2.c checkpoint at `path` into m (m need not be initialised). The file size
 * must match what the header implies exactly; a truncated or oversized file, a nonsensical
 * header or a NaN/inf weight is refused with a message naming the file and the tensor.
 * The config gets norm_eps 1e-5, rope_theta 10000, bos 1, eos 2 (llama2.c's conventions).
 * On success m owns its parameters (model_free); on error m is left zeroed. */
int llama2c_load(model *m, const char *path, model_rope_layout layout, rlhf_error *err);

#endif
