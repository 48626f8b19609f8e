#!/usr/bin/env python3
"""The PyTorch side of bench/bench_train.c: one full training step (forward, cross-entropy,
backward, AdamW) of the reference model in tests/reference/torch_model.py, float32, on the
same shapes and thread count, timed the same way (best of N steps after one warm-up step).

Usage: torch_train.py --shape gpt2|llama [--steps N] [--threads N] [--foreach auto|on|off]
Prints the phase breakdown to stderr and a last line "tokens_per_s X" that bench_train parses.
With --foreach auto (default) AdamW runs both torch implementations (per-tensor loop and
foreach) and the faster one is reported, so the comparison is against torch at its best.
"""
import argparse
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import torch_model as tm  # noqa: E402

SHAPES = {
    "gpt2": dict(cfg=dict(family="gpt2", n_layers=12, dim=768, n_heads=12, n_kv_heads=12, ffn_dim=3072,
                          vocab_size=50257, context=1024, tied=True, norm_eps=1e-5, rope_theta=0.0,
                          rope_layout="half"), B=4, T=64),
    "llama": dict(cfg=dict(family="llama", n_layers=6, dim=288, n_heads=6, n_kv_heads=6, ffn_dim=768,
                           vocab_size=32000, context=256, tied=False, norm_eps=1e-5, rope_theta=10000.0,
                           rope_layout="half"), B=8, T=256),
}


def tensor_shape(cfg, name):
    """Shape of a Hugging Face tensor name (GPT-2 Conv1D [in, out], Llama Linear [out, in])."""
    C, F, V = cfg["dim"], cfg["ffn_dim"], cfg["vocab_size"]
    KV = cfg["n_kv_heads"] * (C // cfg["n_heads"])
    table = [("wte", (V, C)), ("wpe", (cfg["context"], C)), ("c_attn.weight", (C, 3 * C)), ("c_attn.bias", (3 * C,)),
             ("attn.c_proj.weight", (C, C)), ("mlp.c_fc.weight", (C, F)), ("c_fc.bias", (F,)),
             ("mlp.c_proj.weight", (F, C)), ("embed_tokens", (V, C)), ("q_proj", (C, C)), ("k_proj", (KV, C)),
             ("v_proj", (KV, C)), ("o_proj", (C, C)), ("gate_proj", (F, C)), ("up_proj", (F, C)),
             ("down_proj", (C, F)), ("lm_head", (V, C))]
    for key, shape in table:
        if key in name:
            return shape
    return (C,)  # norms and the remaining biases


def make_params(cfg):
    """Random float32 parameters under HF names: N(0, 0.02) matrices, unit norms, zero biases."""
    g = torch.Generator().manual_seed(42)
    p = {}
    for name in tm.param_names(cfg):
        shape = tensor_shape(cfg, name)
        if name.endswith("bias"):
            t = torch.zeros(shape)
        elif len(shape) == 1:
            t = torch.ones(shape)
        else:
            t = torch.randn(shape, generator=g) * 0.02
        p[name] = t.requires_grad_()
    return p


def decays(name, t):
    return t.dim() == 2 and not any(s in name for s in ("wte", "wpe", "embed_tokens", "lm_head"))


def bench(shape, steps, foreach):
    cfg, B, T = shape["cfg"], shape["B"], shape["T"]
    params = make_params(cfg)
    groups = [{"params": [p for n, p in params.items() if decays(n, p)], "weight_decay": 0.1},
              {"params": [p for n, p in params.items() if not decays(n, p)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, foreach=foreach)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, cfg["vocab_size"], (B, T), generator=g)
    targets = torch.randint(0, cfg["vocab_size"], (B, T), generator=g)
    return timed_steps(steps, opt, lambda: tm.forward(cfg, params, tokens)[0],
                       lambda logits: torch.nn.functional.cross_entropy(logits.reshape(-1, cfg["vocab_size"]),
                                                                        targets.reshape(-1)))


def timed_steps(steps, opt, forward, head):
    """steps + 1 optimizer steps (zero_grad, forward(), loss = head(forward's output), backward,
    opt.step); the first is a warm-up. Returns the fastest step's phases (forward, head, backward,
    adamw, step) in seconds."""
    best = None
    for k in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        out = forward()
        t1 = time.perf_counter()
        loss = head(out)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        if k == 0:
            continue
        if best is None or t4 - t0 < best[-1]:
            best = (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0") or 0))
    ap.add_argument("--foreach", choices=["auto", "on", "off"], default="auto")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    shape = SHAPES[a.shape]
    modes = {"auto": [False, True], "on": [True], "off": [False]}[a.foreach]
    results = [(bench(shape, a.steps, fe), fe) for fe in modes]
    (fwd, xent, bwd, adam, step), fe = min(results, key=lambda r: r[0][-1])
    tokens = shape["B"] * shape["T"]
    print(f"torch {torch.__version__} {a.shape}: {torch.get_num_threads()} threads, AdamW foreach={fe}: forward "
          f"{1e3 * fwd:.0f} / xent {1e3 * xent:.0f} / backward {1e3 * bwd:.0f} / adamw {1e3 * adam:.0f} ms "
          f"(step {1e3 * step:.0f} ms)", file=sys.stderr)
    return report(tokens, step)


def report(tokens, step):
    """The lines the C side parses: which BLAS torch's matrix products went through (Debian's
    torch links OpenBLAS, so the OPENBLAS_CORETYPE of the environment picks its kernel too) and
    the tokens/s; the exit status."""
    cfg = torch.__config__.show()
    blas = next((w for w in cfg.replace(",", " ").split() if w.startswith("BLAS_INFO=")), "BLAS_INFO=?")
    print(f"blas {blas} mkldnn={torch.backends.mkldnn.is_available()} OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print(f"tokens_per_s {tokens / step:.3f}")
    return 0 if math.isfinite(step) else 1


if __name__ == "__main__":
    sys.exit(main())
