#!/usr/bin/env bash
# Transcript test of `rlhf model new|convert|info`, `rlhf loss` and `rlhf logits`: what each
# prints, its exit status (0 done, 1 failed, 2 bad usage) and the messages of the error cases
# (missing directory, corrupt and truncated files, bad flags).
set -u
rlhf=$1
data=${RLHF_SHARED_DATA:-../shared/data}
bin=$data/stories260K/stories260K.bin
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rlhf-cli-model-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
# run CMD...: sets $rc, $out (stdout) and $err (stderr)
run() {
  "$@" >"$tmp/stdout" 2>"$tmp/stderr"; rc=$?
  out=$(cat "$tmp/stdout"); err=$(cat "$tmp/stderr")
}
check() {
  if ! eval "$2"; then
    echo "FAIL: $1"; echo "  rc=$rc"; echo "  stdout: ${out:0:600}"; echo "  stderr: ${err:0:600}"; fail=1
  fi
}

# ---- model new ----
run "$rlhf" model new --family llama --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 100 --context 32 --seed 7 --out "$tmp/m1"
check "model new llama exits 0" '[ $rc -eq 0 ]'
check "model new says what it made" '[[ $out == "created $tmp/m1: llama, 2 layers, dim 32, 4 heads (2 kv), ffn 96, vocab 100, context 32, untied; 31,136 parameters (seed 7)" ]]'
check "model new writes config.json and model.safetensors" '[ -f "$tmp/m1/config.json" ] && [ -f "$tmp/m1/model.safetensors" ]'
check "config.json is a transformers Llama config" 'grep -q "\"LlamaForCausalLM\"" "$tmp/m1/config.json" && grep -q "\"num_key_value_heads\": 2" "$tmp/m1/config.json"'

run "$rlhf" model new --family llama --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 100 --context 32 --seed 7 --out "$tmp/m2" --json
check "model new --json" '[ $rc -eq 0 ] && [[ $out == "{\"out\": \"$tmp/m2\", \"family\": \"llama\", \"n_params\": 31136, \"seed\": 7, \"replaced\": false}" ]]'
check "same seed, same bytes" 'cmp -s "$tmp/m1/model.safetensors" "$tmp/m2/model.safetensors"'
echo '{"do_sample": false}' > "$tmp/m2/generation_config.json"
run "$rlhf" model new --family llama --layers 2 --dim 32 --heads 4 --kv-heads 2 --vocab 100 --context 32 --seed 8 --out "$tmp/m2"
check "model new into a model directory replaces it and says so" '[ $rc -eq 0 ] && [[ $out == "replaced the model in $tmp/m2: "* ]]'
check "another seed, other weights" '! cmp -s "$tmp/m1/model.safetensors" "$tmp/m2/model.safetensors"'
check "files of other modules are left alone" '[ -f "$tmp/m2/generation_config.json" ]'
check "no temporary files left behind" '[ -z "$(ls "$tmp/m2" | grep "\.tmp\.")" ]'
run "$rlhf" model new --family gpt2 --layers 2 --dim 32 --heads 4 --vocab 100 --context 16 --untied --seed 1 --out "$tmp/g1"
check "model new gpt2 untied" '[ $rc -eq 0 ] && [[ $out == *"gpt2, 2 layers, dim 32, 4 heads, ffn 128, vocab 100, context 16, untied"* ]]'

run "$rlhf" model new --family llama --layers 2 --heads 4 --vocab 100 --context 32 --out "$tmp/x"
check "model new without --dim: exit 2 naming the flag" '[ $rc -eq 2 ] && [[ $err == *"--dim is required"* ]] && [[ $err == *"usage: rlhf model new"* ]]'
run "$rlhf" model new --family bert --layers 2 --dim 32 --heads 4 --vocab 100 --context 32 --out "$tmp/x"
check "model new --family bert: exit 2" '[ $rc -eq 2 ] && [[ $err == *"expected gpt2 or llama"* ]]'
run "$rlhf" model new --family llama --layers 2 --dim 30 --heads 4 --vocab 100 --context 32 --out "$tmp/x"
check "model new --dim not a multiple of --heads: exit 2" '[ $rc -eq 2 ] && [[ $err == *"--dim 30 must be a multiple of --heads 4"* ]]'
run "$rlhf" model new --family llama --layers two --dim 32 --heads 4 --vocab 100 --context 32 --out "$tmp/x"
check "model new --layers two: exit 2" '[ $rc -eq 2 ] && [[ $err == *"--layers: expected an integer"* ]]'
run "$rlhf" model new --family gpt2 --layers 2 --dim 32 --heads 4 --vocab 100 --context 32 --out "$tmp/x" --bogus
check "unknown option: exit 2 naming it" '[ $rc -eq 2 ] && [[ $err == *"unknown option '"'"'--bogus'"'"'"* ]]'
run "$rlhf" model new --family gpt2 --layers 2 --dim 32 --heads 4 --vocab 100 --context 32 --out
check "option without its value: exit 2" '[ $rc -eq 2 ] && [[ $err == *"needs a value"* ]]'
check "failed model new wrote nothing" '[ ! -e "$tmp/x" ]'
run "$rlhf" model new --help
check "model new --help exits 0 with the usage" '[ $rc -eq 0 ] && [[ $out == "usage: rlhf model new --family gpt2|llama"* ]]'

# ---- model info ----
run "$rlhf" model info "$tmp/m1"
check "model info exits 0" '[ $rc -eq 0 ]'
check "model info shows the config" '[[ $out == *"family      llama (LlamaForCausalLM)"* ]] && [[ $out == *"heads       4 (kv heads 2, head size 8)"* ]]'
check "model info shows the parameter count" '[[ $out == *"parameters  31,136 in 21 tensors"* ]]'
check "model info shows memory with grads and AdamW" '[[ $out == *"memory      121.6 KiB params, 243.2 KiB with gradients, 486.5 KiB with gradients + AdamW"* ]]'
run "$rlhf" model info "$tmp/g1" --tensors
check "model info --tensors lists Conv1D [in,out] shapes" '[ $rc -eq 0 ] && [[ $out == *"transformer.h.1.attn.c_attn.weight"*"32 x 96"* ]] && [[ $out == *"lm_head.weight"* ]]'
run "$rlhf" model info "$tmp/m1" --json
check "model info --json" '[ $rc -eq 0 ] && [[ $out == *"\"n_params\": 31136"* ]] && [[ $out == *"\"norm_eps\": 1e-05"* ]] && [[ $out == *"\"params_grads_adamw\": 498176"* ]]'
run "$rlhf" model info "$tmp/nope"
check "model info of a missing directory: exit 1 naming it" '[ $rc -eq 1 ] && [[ $err == "rlhf: $tmp/nope: no such model directory or file" ]]'
run "$rlhf" model info
check "model info without a path: exit 2" '[ $rc -eq 2 ]'

cp -r "$tmp/m1" "$tmp/cut"
truncate -s -100 "$tmp/cut/model.safetensors"
run "$rlhf" model info "$tmp/cut"
check "truncated weights: exit 1 naming file and tensor" '[ $rc -eq 1 ] && [[ $err == *"$tmp/cut/model.safetensors: tensor \"lm_head.weight\""*"truncated"* ]]'
cp -r "$tmp/m1" "$tmp/badcfg"
sed -i 's/"num_attention_heads": 4/"num_attention_heads": 3/' "$tmp/badcfg/config.json"
run "$rlhf" model info "$tmp/badcfg"
check "bad config field: exit 1 naming file and field" '[ $rc -eq 1 ] && [[ $err == *"$tmp/badcfg/config.json"*"\"num_attention_heads\""* ]]'
cp -r "$tmp/m1" "$tmp/junk"
printf 'this is not safetensors' > "$tmp/junk/model.safetensors"
run "$rlhf" model info "$tmp/junk"
check "garbage weights file: exit 1, a format error naming the file" '[ $rc -eq 1 ] && [[ $err == *"$tmp/junk/model.safetensors: header length"* ]]'

# ---- model convert ----
run "$rlhf" model convert --from llama2c "$bin" --out "$tmp/s260"
check "convert stories260K exits 0" '[ $rc -eq 0 ] && [[ $out == *"llama, 5 layers, dim 64, 8 heads (4 kv), ffn 172, vocab 512, context 512, tied; 260,032 parameters"* ]]'
check "converted directory is a plain HF Llama (no rope layout field)" '! grep -q rlhf_rope_layout "$tmp/s260/config.json"'
run "$rlhf" model info "$tmp/s260"
check "converted model info" '[ $rc -eq 0 ] && [[ $out == *"parameters  260,032 in 47 tensors"* ]] && [[ $out == *"rope        theta 10000, half-split"* ]]'
head -c 500000 "$bin" > "$tmp/cut.bin"
run "$rlhf" model convert --from llama2c "$tmp/cut.bin" --out "$tmp/cutconv"
check "convert a truncated .bin: exit 1 naming file and tensor" '[ $rc -eq 1 ] && [[ $err == *"$tmp/cut.bin: truncated: the file ends inside tensor \"w1\" of layer 2 (model.layers.2.mlp.gate_proj.weight)"* ]]'
check "failed convert wrote nothing" '[ ! -e "$tmp/cutconv/model.safetensors" ]'
run "$rlhf" model convert --from gguf "$bin" --out "$tmp/x"
check "convert --from gguf of a llama2.c file: exit 1 naming the real format" '[ $rc -eq 1 ] && [[ $err == *"is a llama2c file, not gguf (use --from llama2c)"* ]]'
check "the refused convert wrote nothing" '[ ! -e "$tmp/x" ]'
run "$rlhf" model convert --from onnx "$bin" --out "$tmp/x"
check "convert --from onnx: exit 2" '[ $rc -eq 2 ] && [[ $err == *"expected llama2c or gguf, got '"'"'onnx'"'"'"* ]]'
run "$rlhf" model convert --from llama2c --out "$tmp/x"
check "convert without FILE: exit 2" '[ $rc -eq 2 ] && [[ $err == *"the file to convert is required"* ]]'
run "$rlhf" model convert --from llama2c "$tmp/missing.bin" --out "$tmp/x"
check "convert a missing file: exit 1" '[ $rc -eq 1 ] && [[ $err == *"$tmp/missing.bin: no such model directory or file"* ]]'

# ---- loss ----
run "$rlhf" loss --model "$tmp/s260" --tokens "1 461 461 401 401 401 461 378"
check "loss exits 0" '[ $rc -eq 0 ] && [[ $out == "loss "*" over 7 predictions of 8 tokens" ]]'
run "$rlhf" loss --model "$bin" --tokens "1,461,461,401,401,401,461,378" --json
loss_bin=$out
run "$rlhf" loss --model "$tmp/s260" --tokens "1 461 461 401 401 401 461 378" --json --grads "$tmp/g.safetensors"
check "loss --json --grads" '[ $rc -eq 0 ] && [[ $out == "{\"loss\": "*", \"tokens\": 8, \"predictions\": 7, \"grads\": \"$tmp/g.safetensors\", \"grad_tensors\": 47}" ]]'
check ".bin and converted directory give the same loss" '[[ ${loss_bin%%, \"perplexity*} == ${out%%, \"perplexity*} ]]'
check "gradients written under the parameter names" '[ -f "$tmp/g.safetensors" ] && head -c 16000 "$tmp/g.safetensors" | grep -q "model.layers.4.mlp.down_proj.weight"'
run "$rlhf" loss --model "$tmp/s260" --tokens "1"
check "loss of one token: exit 2" '[ $rc -eq 2 ] && [[ $err == *"at least 2 ids"* ]]'
run "$rlhf" loss --model "$tmp/s260" --tokens "1 two 3"
check "loss with a non-numeric id: exit 2" '[ $rc -eq 2 ] && [[ $err == *"'"'"'two'"'"' is not a token id"* ]]'
run "$rlhf" loss --model "$tmp/s260" --tokens "1 2 9999"
check "loss with an id outside the vocabulary: exit 2 naming id and position" '[ $rc -eq 2 ] && [[ $err == *"id 9999 at position 2 is outside the model'"'"'s vocabulary (512 tokens)"* ]]'
run "$rlhf" logits --model "$tmp/s260" --tokens "1 600"
check "logits with an id outside the vocabulary: exit 2" '[ $rc -eq 2 ] && [[ $err == *"id 600 at position 1"* ]]'
run "$rlhf" loss --tokens "1 2"
check "loss without --model: exit 2" '[ $rc -eq 2 ] && [[ $err == *"--model is required"* ]]'
run "$rlhf" loss --model "$tmp/nope" --tokens "1 2"
check "loss on a missing directory: exit 1" '[ $rc -eq 1 ] && [[ $err == *"$tmp/nope: no such model directory or file"* ]]'

# ---- logits ----
run "$rlhf" logits --model "$bin" --tokens "1" --json
check "logits --json of a .bin" '[ $rc -eq 0 ] && [[ $out == "{\"model\": \"$bin\", \"tokens\": [1], \"vocab_size\": 512, \"logits\": ["* ]]'
first=$(printf '%s\n' "$out" | sed -n 2p | sed 's/^\[\([^,]*\),.*/\1/')
check "first logit matches llama2.c (1.97387 within 1e-4)" 'awk -v x="$first" "BEGIN { d = x - 1.97387; exit !(d < 1e-4 && d > -1e-4) }"'
logits_bin=$out
run "$rlhf" logits --model "$tmp/s260" --tokens "1" --json
check "converted directory gives the same logits as the .bin" '[ "${out#*\"logits\"}" == "${logits_bin#*\"logits\"}" ]'
run "$rlhf" logits --model "$tmp/s260" --tokens "1 461"
check "logits without --json: top tokens per position" '[ $rc -eq 0 ] && [[ $out == "pos 0 token 1 -> 461 ("*"pos 1 token 461 -> 461 ("* ]]'
run "$rlhf" logits --model "$tmp/cut.bin" --tokens "1" --json
check "logits of a truncated .bin: exit 1" '[ $rc -eq 1 ] && [[ $err == *"truncated"* ]]'
run "$rlhf" logits --model "$tmp/s260"
check "logits without --tokens: exit 2" '[ $rc -eq 2 ] && [[ $err == *"--tokens is required"* ]]'

# ---- the command itself ----
run "$rlhf" model
check "model without a subcommand: exit 2 listing them" '[ $rc -eq 2 ] && [[ $err == *"rlhf model new"*"rlhf model convert"*"rlhf model info"* ]]'
run "$rlhf" model frobnicate
check "unknown model subcommand: exit 2" '[ $rc -eq 2 ] && [[ $err == *"unknown model subcommand '"'"'frobnicate'"'"'"* ]]'
run "$rlhf" model --help
check "model --help: exit 0" '[ $rc -eq 0 ] && [[ $out == *"rlhf model info"* ]]'

[ $fail -eq 0 ] && echo "cli_model: all checks passed"
exit $fail
