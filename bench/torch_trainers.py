#!/usr/bin/env python3
"""The PyTorch side of bench/bench_trainers.c: one optimizer step of an SFT, reward-model, DPO or
LoRA-SFT trainer, with the reference model of tests/reference/torch_model.py in float32, on the
same shapes, data layout and thread count, timed the same way (best of N steps after one warm-up).

  sft   cross-entropy over the reply half of each row (ignore_index on the prompt half)
  rm    a classifier body (no LM head: a (1, C) stand-in head keeps torch_model.forward's
        signature at negligible cost), score = score.weight . hidden[:, -1], Bradley-Terry
        -logsigmoid(r_chosen - r_rejected).mean() over rows (2i, 2i+1)
  dpo   reply log-probabilities per row (cross_entropy, reduction none, summed), TRL's sigmoid loss
        -logsigmoid(beta ((pc - ref_c) - (pr - ref_r))) with beta 0.1 against reference
        log-probabilities computed once before timing (the cache)
  lora  the sft step with PEFT's LoRA layer (lora_torch.py's reference: y = W x + s B A x) of rank
        8 on q_proj,v_proj / c_attn, the base frozen (requires_grad False), AdamW over A and B

Usage: torch_trainers.py --shape llama|gpt2|tiny|tiny2 --bench sft|rm|dpo|lora [--steps N] [--threads N]
                         [--foreach auto|on|off]
Prints the phase breakdown to stderr, "blas ..." and a last line "tokens_per_s X".
"""
import argparse
import math
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
sys.path.insert(0, HERE)
import torch_model as tm  # noqa: E402
from lora_torch import lora_params, linear_modules  # noqa: E402  (PEFT's LoRA layer, unmerged)
from torch_train import SHAPES, decays, make_params, report, timed_steps  # noqa: E402  (bench_train's shapes, init, output)

SHAPES = dict(SHAPES, tiny=dict(cfg=dict(family="llama", n_layers=2, dim=64, n_heads=4, n_kv_heads=2, ffn_dim=160,
                                         vocab_size=512, context=64, tied=False, norm_eps=1e-5, rope_theta=10000.0,
                                         rope_layout="half"), B=4, T=32),
              tiny2=dict(cfg=dict(family="gpt2", n_layers=2, dim=64, n_heads=4, n_kv_heads=4, ffn_dim=256,
                                  vocab_size=512, context=64, tied=True, norm_eps=1e-5, rope_theta=0.0,
                                  rope_layout="half"), B=4, T=32))
BETA = 0.1
LORA_RANK, LORA_ALPHA = 8, 8


def setup(shape, bench):
    """(cfg used by forward, {name: tensor} for forward, {name: trainable tensor}, tokens, targets)."""
    cfg, B, T = dict(shape["cfg"]), shape["B"], shape["T"]
    V, C = cfg["vocab_size"], cfg["dim"]
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, V, (B, T), generator=g)
    targets = torch.randint(0, V, (B, T), generator=g)
    targets[:, : T // 2] = -1  # the prompt half: no loss
    params = make_params(cfg)
    if bench == "rm":
        params.pop("lm_head.weight", None)
        cfg["tied"] = False
        params["lm_head.weight"] = torch.zeros(1, C)  # stand-in: forward's (B, T, 1) "logits" are unused
        params["score.weight"] = (torch.randn(1, C, generator=g) * 0.02).requires_grad_()
    if bench == "lora":
        for p in params.values():
            p.requires_grad_(False)
        keys = ["c_attn"] if cfg["family"] == "gpt2" else ["q_proj", "v_proj"]
        adapter = {}
        for name, fin, fout in linear_modules(cfg):
            if any(name.endswith("." + k) for k in keys):
                bound = 1.0 / math.sqrt(fin)
                adapter[f"base_model.model.{name}.lora_A.weight"] = ((torch.rand(LORA_RANK, fin, generator=g) * 2 - 1)
                                                                     * bound).requires_grad_()
                adapter[f"base_model.model.{name}.lora_B.weight"] = (torch.randn(fout, LORA_RANK, generator=g)
                                                                     * 0.01).requires_grad_()
        return cfg, lora_params(cfg, params, adapter, LORA_ALPHA / LORA_RANK), adapter, tokens, targets
    return cfg, params, params, tokens, targets


def reply_logps(cfg, logits, targets):
    B, T = targets.shape
    nll = F.cross_entropy(logits.reshape(-1, cfg["vocab_size"]), targets.reshape(-1), ignore_index=-1,
                          reduction="none")
    return -nll.view(B, T).sum(-1)


def bench_once(shape, bench, steps, foreach):
    cfg, fparams, trainable, tokens, targets = setup(shape, bench)
    groups = [{"params": [p for n, p in trainable.items() if decays(n, p)], "weight_decay": 0.1},
              {"params": [p for n, p in trainable.items() if not decays(n, p)], "weight_decay": 0.0}]
    groups = [gr for gr in groups if gr["params"]]
    opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, foreach=foreach)
    ref = None
    if bench == "dpo":
        with torch.no_grad():
            ref = reply_logps(cfg, tm.forward(cfg, fparams, tokens)[0], targets)

    def head(out):
        logits, hidden = out
        if bench in ("sft", "lora"):
            return F.cross_entropy(logits.reshape(-1, cfg["vocab_size"]), targets.reshape(-1), ignore_index=-1)
        if bench == "rm":
            r = hidden[:, -1] @ fparams["score.weight"].T
            return -F.logsigmoid(r[0::2, 0] - r[1::2, 0]).mean()
        lp = reply_logps(cfg, logits, targets)
        return -F.logsigmoid(BETA * ((lp[0::2] - ref[0::2]) - (lp[1::2] - ref[1::2]))).mean()

    return timed_steps(steps, opt, lambda: tm.forward(cfg, fparams, tokens), head)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--bench", choices=["sft", "rm", "dpo", "lora"], required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0") or 0))
    ap.add_argument("--foreach", choices=["auto", "on", "off"], default="auto")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)  # after the imports (lora_torch sets 1 for its tests)
    shape = SHAPES[a.shape]
    modes = {"auto": [False, True], "on": [True], "off": [False]}[a.foreach]
    results = [(bench_once(shape, a.bench, a.steps, fe), fe) for fe in modes]
    (fwd, head, bwd, adam, step), fe = min(results, key=lambda r: r[0][-1])
    print(f"torch {torch.__version__} {a.bench} {a.shape}: {torch.get_num_threads()} threads, AdamW foreach={fe}: "
          f"forward {1e3 * fwd:.1f} / head {1e3 * head:.1f} / backward {1e3 * bwd:.1f} / adamw {1e3 * adam:.1f} ms "
          f"(step {1e3 * step:.1f} ms)", file=sys.stderr)
    return report(shape["B"] * shape["T"], step)


if __name__ == "__main__":
    sys.exit(main())
