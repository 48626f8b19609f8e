"""lora_torch.py - the engine's LoRA adapters against a plain-torch LoRA and PEFT's file layout.

Usage: lora_torch.py TEST_LORA_EXE

PEFT is not installed here; the reference writes PEFT's layer itself, as PEFT defines it:
y = base(x) + scaling * lora_B(lora_A(x)), lora_A.weight (r, in_features), lora_B.weight
(out_features, r), scaling = lora_alpha / r, where a GPT-2 Conv1D's (in_features, out_features)
is its weight's shape (stored [in, out]; PEFT's fan_in_fan_out) and a Linear's is (in, out) of
its (out, in) weight. It is applied unmerged, through torch_model.py's forward, by handing that
forward weight objects whose product with x adds the low-rank term.

For tiny random GPT-2 and Llama (GQA, untied head) models with several target sets:
1. `test_lora dump` builds a model and an adapter (B nonzero), runs forward / cross-entropy /
   backward, saves the adapter with lora_save. Checked here: the adapter directory has exactly
   the tensor names and shapes this script derives from the Hugging Face module names by PEFT's
   rules (base_model.model.<module>.lora_A.weight ...), and adapter_config.json PEFT's fields;
   logits and loss within 1e-4 relative (max |err| <= 1e-4 x max |ref|), the gradient of every
   lora_A / lora_B within 1e-3 x that tensor's max |grad| (the tolerances of
   test_torch_model.py for the engine's gradients).
2. This script writes its own PEFT-layout adapter (its own names, another rank and alpha, PEFT's
   full set of config fields, tensors in another order); `test_lora dump adapter_in=DIR` loads
   it: its logits must match the reference's with that adapter (1e-4 relative) and the adapter
   it saves back must hold the same tensors.
Exits non-zero naming each failed property.
"""
import json
import os
import random
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_model as tm  # noqa: E402

torch.set_num_threads(1)
FAILS = []
CHECKS = [0]


def check(ok, what):
    CHECKS[0] += 1
    if not ok:
        FAILS.append(what)
        print("FAIL", what, file=sys.stderr)


# ---- PEFT's naming, from the Hugging Face module names ----

def linear_modules(cfg):
    """(full module name, in_features, out_features) of every Linear/Conv1D in the layers."""
    C, F, L = cfg["dim"], cfg["ffn_dim"], cfg["n_layers"]
    HS = C // cfg["n_heads"]
    out = []
    for l in range(L):
        if cfg["family"] == "gpt2":
            p = f"transformer.h.{l}."
            # Conv1D weight (nx, nf): PEFT takes in_features, out_features = weight.shape
            out += [(p + "attn.c_attn", C, 3 * C), (p + "attn.c_proj", C, C), (p + "mlp.c_fc", C, F),
                    (p + "mlp.c_proj", F, C)]
        else:
            p = f"model.layers.{l}."
            kv = cfg["n_kv_heads"] * HS
            out += [(p + "self_attn.q_proj", C, cfg["n_heads"] * HS), (p + "self_attn.k_proj", C, kv),
                    (p + "self_attn.v_proj", C, kv), (p + "self_attn.o_proj", cfg["n_heads"] * HS, C),
                    (p + "mlp.gate_proj", C, F), (p + "mlp.up_proj", C, F), (p + "mlp.down_proj", F, C)]
    return out


def targeted(name, targets):
    """PEFT's check_target_module_exists for a list: equal, or ends with '.' + key."""
    return any(name == k or name.endswith("." + k) for k in targets)


def peft_layout(cfg, targets, r):
    """{tensor name: shape} of a PEFT LoRA adapter_model.safetensors for a CausalLM."""
    out = {}
    for name, fin, fout in linear_modules(cfg):
        if targeted(name, targets):
            out[f"base_model.model.{name}.lora_A.weight"] = (r, fin)
            out[f"base_model.model.{name}.lora_B.weight"] = (fout, r)
    return out


# ---- the reference LoRA layer ----

class LoraWeight:
    """Stands in for a weight tensor in torch_model.forward: `x @ w` (GPT-2 Conv1D) and
    `x @ w.T` (Llama Linear) return the base product plus scaling * B(A(x))."""

    def __init__(self, w, a, b, scaling, transposed=False):
        self.w, self.a, self.b, self.scaling, self.transposed = w, a, b, scaling, transposed

    @property
    def T(self):
        return LoraWeight(self.w, self.a, self.b, self.scaling, not self.transposed)

    def __rmatmul__(self, x):
        base = x @ (self.w.T if self.transposed else self.w)
        return base + self.scaling * ((x @ self.a.T) @ self.b.T)


def lora_params(cfg, base, adapter, scaling):
    p = dict(base)
    for name, _, _ in linear_modules(cfg):
        ka = f"base_model.model.{name}.lora_A.weight"
        if ka in adapter:
            p[name + ".weight"] = LoraWeight(base[name + ".weight"], adapter[ka],
                                             adapter[f"base_model.model.{name}.lora_B.weight"], scaling)
    return p


def dump_args(exe, case, toks, tgts, out, extra=()):
    cfg = case["cfg"]
    return [exe, "dump", f"family={cfg['family']}", f"layers={cfg['n_layers']}", f"dim={cfg['dim']}",
            f"heads={cfg['n_heads']}", f"kv_heads={cfg['n_kv_heads']}", f"ffn={cfg['ffn_dim']}",
            f"vocab={cfg['vocab_size']}", f"context={cfg['context']}", f"tied={int(cfg['tied'])}",
            f"seed={case['seed']}", f"batch={case['B']}", "tokens=" + ",".join(map(str, toks)),
            "targets=" + ",".join(map(str, tgts)), f"out={out}", *extra]


def run_case(exe, case, tmp):
    cfg, tag, B, T = case["cfg"], case["name"], case["B"], case["T"]
    rng = random.Random(case["seed"])
    toks = [rng.randrange(cfg["vocab_size"]) for _ in range(B * T)]
    tgts = [toks[i + 1] if (i + 1) % T else -1 for i in range(B * T)]
    targets, r, alpha = case["targets"], case["rank"], case["alpha"]
    res = subprocess.run(dump_args(exe, case, toks, tgts, tmp,
                                   [f"modules={','.join(targets)}", f"rank={r}", f"alpha={alpha}"]),
                         capture_output=True, text=True)
    if res.returncode != 0:
        check(False, f"{tag}: test_lora dump failed: {res.stderr.strip()}")
        return
    adir = os.path.join(tmp, "adapter")
    # 1a. names, shapes and config as PEFT writes them
    ours = tm.st_read(os.path.join(adir, "adapter_model.safetensors"))
    want = peft_layout(cfg, targets, r)
    check(sorted(ours) == sorted(want), f"{tag}: adapter tensor names are PEFT's: extra {sorted(set(ours) - set(want))[:3]}"
          f" missing {sorted(set(want) - set(ours))[:3]}")
    for k, shape in want.items():
        if k in ours:
            check(tuple(ours[k].shape) == shape, f"{tag}: {k} has shape {tuple(ours[k].shape)}, PEFT's is {shape}")
    with open(os.path.join(adir, "adapter_config.json")) as f:
        conf = json.load(f)
    expect = {"peft_type": "LORA", "r": r, "lora_alpha": alpha, "lora_dropout": 0, "bias": "none",
              "task_type": "CAUSAL_LM", "base_model_name_or_path": "tiny-random",
              "fan_in_fan_out": cfg["family"] == "gpt2", "use_dora": False, "use_rslora": False}
    for k, v in expect.items():
        check(conf.get(k) == v, f"{tag}: adapter_config.json {k} = {conf.get(k)!r}, expected {v!r}")
    check(sorted(conf.get("target_modules") or []) == sorted(targets), f"{tag}: target_modules {conf.get('target_modules')}")

    # 1b. forward, loss and adapter gradients
    base = {k: v.double() for k, v in tm.st_read(os.path.join(tmp, "params.safetensors")).items()}
    adapter = {k: v.double().requires_grad_() for k, v in ours.items()}
    outs = tm.st_read(os.path.join(tmp, "outputs.safetensors"))
    grads = tm.st_read(os.path.join(tmp, "grads.safetensors"))
    tokens = torch.tensor(toks).reshape(B, T)
    targets_t = torch.tensor(tgts).reshape(B, T)
    logits, _ = tm.forward(cfg, lora_params(cfg, base, adapter, alpha / r), tokens)
    loss, _ = tm.xent(logits, targets_t)
    loss.backward()
    scale = logits.abs().max().item()
    err = (outs["logits"].double() - logits.detach()).abs().max().item()
    check(err <= 1e-4 * scale, f"{tag}: logits max err {err:.3g} vs max |logit| {scale:.3g}")
    lerr = abs(outs["loss"].double().item() - loss.item())
    check(lerr <= 1e-4 * abs(loss.item()), f"{tag}: loss {outs['loss'].item():.7g} vs {loss.item():.7g}")
    check(sorted(grads) == sorted(want), f"{tag}: gradient names")
    for k in want:
        g_ref = adapter[k].grad
        gs = g_ref.abs().max().item()
        ge = (grads[k].double() - g_ref).abs().max().item()
        check(gs > 0 and ge <= 1e-3 * gs + 1e-12, f"{tag}: gradient of {k}: max err {ge:.3g} vs max |grad| {gs:.3g}")

    # 2. a PEFT-layout adapter written here, loaded by the engine
    r2, alpha2 = r + 1, 3.0 * (r + 1)
    gen = torch.Generator().manual_seed(case["seed"] + 100)
    theirs = {}
    for k, (d0, d1) in sorted(peft_layout(cfg, targets, r2).items(), reverse=True):  # B before A
        shape = (r2, d1) if k.endswith("lora_A.weight") else (d0, r2)
        theirs[k] = torch.randn(*shape, generator=gen, dtype=torch.float32) * 0.3
    pdir = os.path.join(tmp, "peft")
    os.makedirs(pdir, exist_ok=True)
    tm.st_write(os.path.join(pdir, "adapter_model.safetensors"), theirs, metadata={"format": "pt"})
    peft_conf = {"alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": "tiny-random",
                 "bias": "none", "fan_in_fan_out": cfg["family"] == "gpt2", "inference_mode": True,
                 "init_lora_weights": True, "layer_replication": None, "layers_pattern": None,
                 "layers_to_transform": None, "loftq_config": {}, "lora_alpha": alpha2, "lora_dropout": 0.05,
                 "megatron_config": None, "megatron_core": "megatron.core", "modules_to_save": None,
                 "peft_type": "LORA", "r": r2, "rank_pattern": {}, "revision": None,
                 "target_modules": list(reversed(targets)), "task_type": "CAUSAL_LM", "use_dora": False,
                 "use_rslora": False}
    with open(os.path.join(pdir, "adapter_config.json"), "w") as f:
        json.dump(peft_conf, f, indent=2)
    out2 = os.path.join(tmp, "reload")
    os.makedirs(out2, exist_ok=True)
    res = subprocess.run(dump_args(exe, case, toks, tgts, out2, [f"adapter_in={pdir}"]), capture_output=True, text=True)
    if res.returncode != 0:
        check(False, f"{tag}: engine refused a PEFT-layout adapter: {res.stderr.strip()}")
        return
    logits2, _ = tm.forward(cfg, lora_params(cfg, base, {k: v.double() for k, v in theirs.items()}, alpha2 / r2), tokens)
    got = tm.st_read(os.path.join(out2, "outputs.safetensors"))["logits"].double()
    scale = logits2.abs().max().item()
    err = (got - logits2).abs().max().item()
    check(err <= 1e-4 * scale, f"{tag}: PEFT-layout adapter: logits max err {err:.3g} vs max |logit| {scale:.3g}")
    back = tm.st_read(os.path.join(out2, "adapter", "adapter_model.safetensors"))
    check(sorted(back) == sorted(theirs) and all(torch.equal(back[k], theirs[k]) for k in theirs),
          f"{tag}: PEFT-layout adapter saved back unchanged")


def main():
    exe = sys.argv[1]
    gpt2 = dict(family="gpt2", n_layers=2, dim=16, n_heads=4, n_kv_heads=4, ffn_dim=64, vocab_size=50, context=32,
                tied=True, norm_eps=1e-5, rope_theta=10000.0, rope_layout="half")
    llama = dict(family="llama", n_layers=2, dim=16, n_heads=4, n_kv_heads=2, ffn_dim=24, vocab_size=50, context=32,
                 tied=False, norm_eps=1e-5, rope_theta=10000.0, rope_layout="half")
    cases = [
        dict(name="gpt2 all", cfg=gpt2, targets=["c_attn", "c_proj", "c_fc"], rank=4, alpha=8, seed=1, B=2, T=8),
        dict(name="gpt2 attn.c_proj+c_fc", cfg=gpt2, targets=["attn.c_proj", "c_fc"], rank=2, alpha=5, seed=2, B=2,
             T=7),
        dict(name="llama gqa all", cfg=llama, targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                       "down_proj"], rank=3, alpha=6, seed=3, B=2, T=8),
        dict(name="llama gqa q,v,down", cfg=llama, targets=["q_proj", "v_proj", "down_proj"], rank=4, alpha=16,
             seed=4, B=3, T=5),
    ]
    for case in cases:
        with tempfile.TemporaryDirectory() as tmp:
            run_case(exe, case, tmp)
    print(f"lora vs torch: {CHECKS[0]} checks, {len(FAILS)} failed", file=sys.stderr)
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
