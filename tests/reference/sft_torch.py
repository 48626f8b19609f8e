#!/usr/bin/env python3
"""sft_torch.py - the SFT objective against plain PyTorch: masked loss, every trained gradient,
and 10 AdamW steps, for full fine-tuning and LoRA on tiny random GPT-2 and Llama models.

Usage: sft_torch.py SFT_STEPS_EXE

tests/sft_steps.c encodes SFT examples (prompt/completion and chats; completion-only masks, EOS
appended) with the engine's own encoder and data source and prints the exact micro-batches it
trains on (padded inputs, targets -1 where no loss). Here, with tests/reference/torch_model.py's
independent model (float64) and lora_torch.py's PEFT-style LoRA layer:
1. the masked cross-entropy of micro-batch (0, 0) (mean over its loss tokens) within 1e-6
   relative, and the gradient of every trained tensor (all model tensors, or every lora_A /
   lora_B) within 1e-3 of that tensor's largest |gradient| (the engine tests' tolerance);
2. 10 optimizer steps (accumulation 2, torch.optim.AdamW betas (0.9, 0.999), weight decay 0.1 on
   matrices, clip_grad_norm_ 1.0 (0.02 with LoRA, whose gradients are smaller; clipping must
   engage), warmup 3 then cosine): each step's loss and gradient norm, and
   every trained tensor after the last step, within 1e-3 relative (tensors: max |diff| <= 1e-3 x
   max |value|).
Also checked: the padding carries no loss (targets -1 past each row's length) and the masks are
not trivial (some targets are -1 inside rows: the prompts).
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_model as tm  # noqa: E402
from lora_torch import lora_params  # noqa: E402

torch.set_num_threads(1)
RTOL = 1e-3
STEPS = 10
HP = dict(lr=1e-2, min_lr=1e-3, warmup=3, weight_decay=0.1, grad_clip=1.0)
FAILS = []
CHECKS = [0]


def check(ok, what):
    CHECKS[0] += 1
    if not ok:
        FAILS.append(what)
        print("FAIL", what, file=sys.stderr)


def schedule(step):
    if step < HP["warmup"]:
        return HP["lr"] * (step + 1) / HP["warmup"]
    ratio = min(1.0, (step - HP["warmup"]) / max(1, STEPS - HP["warmup"]))
    return HP["min_lr"] + 0.5 * (1 + math.cos(math.pi * ratio)) * (HP["lr"] - HP["min_lr"])


def decays(name, t):
    """The engine's default groups: decay on matrices, not on embeddings, the head, norms, biases
    (LoRA's A and B are matrices)."""
    return t.dim() == 2 and not any(s in name for s in ("wte", "wpe", "embed_tokens", "lm_head"))


def run_case(exe, case, tmp):
    tag, cfg = case["name"], case["cfg"]
    clip = case.get("clip", HP["grad_clip"])
    args = [exe, f"family={cfg['family']}", f"layers={cfg['n_layers']}", f"dim={cfg['dim']}",
            f"heads={cfg['n_heads']}", f"kv_heads={cfg['n_kv_heads']}", f"ffn={cfg['ffn_dim']}",
            f"vocab={cfg['vocab_size']}", f"context={cfg['context']}", f"tied={int(cfg['tied'])}",
            f"seed={case['seed']}", "batch=3", "accum=2", f"steps={STEPS}", f"lr={HP['lr']}",
            f"min_lr={HP['min_lr']}", f"warmup={HP['warmup']}", f"weight_decay={HP['weight_decay']}",
            f"grad_clip={clip}", f"out={tmp}"]
    lora = case.get("lora")
    if lora:
        args += [f"lora_rank={lora['r']}", f"lora_alpha={lora['alpha']}", "lora_targets=" + ",".join(lora["targets"])]
    res = subprocess.run(args, capture_output=True, text=True)
    if res.returncode != 0:
        check(False, f"{tag}: sft_steps failed: {res.stderr.strip()}")
        return
    c = json.loads(res.stdout)
    with open(os.path.join(tmp, "model", "config.json")) as f:
        cfg = tm.config_from_hf(json.load(f))
    base = {k: v.double() for k, v in tm.st_read(os.path.join(tmp, "model", "model.safetensors")).items()}
    if lora:
        trained = {k: v.double().requires_grad_() for k, v in
                   tm.st_read(os.path.join(tmp, "adapter", "adapter_model.safetensors")).items()}
        scaling = lora["alpha"] / lora["r"]

        def params():
            return lora_params(cfg, base, trained, scaling)
    else:
        trained = {k: v.clone().requires_grad_() for k, v in base.items()}

        def params():
            return trained

    def batch(s, k):
        b = c["batches"][s][k]
        B, T = b["B"], b["T"]
        return torch.tensor(b["tokens"]).reshape(B, T), torch.tensor(b["targets"]).reshape(B, T)

    # Masks: the padding and the prompts carry no loss.
    toks, tgts = batch(0, 0)
    check(bool((tgts < 0).any()) and bool((tgts >= 0).any()), f"{tag}: masks are neither empty nor full")

    # 1. loss and gradients of micro-batch (0, 0)
    logits, _ = tm.forward(cfg, params(), toks)
    loss, _ = tm.xent(logits, tgts)
    loss.backward()
    loss0 = loss.item()
    check(abs(c["loss0"] - loss.item()) <= 1e-6 * abs(loss.item()),
          f"{tag}: masked loss {c['loss0']:.9g} vs torch {loss.item():.9g}")
    grads = tm.st_read(os.path.join(tmp, "grads.safetensors"))
    check(sorted(grads) == sorted(trained), f"{tag}: gradient names {sorted(set(grads) ^ set(trained))[:4]}")
    worst = 0.0
    for name, p in trained.items():
        if name not in grads:
            continue
        ref = p.grad
        scale = ref.abs().max().item()
        e = (grads[name].double() - ref).abs().max().item()
        worst = max(worst, e / scale if scale > 0 else e)
        check(scale > 0 and e <= 1e-3 * scale, f"{tag}: gradient of {name}: max err {e:.3g} vs max |grad| {scale:.3g}")
    for p in trained.values():
        p.grad = None

    # 2. ten optimizer steps
    groups = [{"params": [p for n, p in trained.items() if decays(n, p)], "weight_decay": HP["weight_decay"]},
              {"params": [p for n, p in trained.items() if not decays(n, p)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=HP["lr"], betas=(0.9, 0.999), eps=1e-8)
    clipped = 0
    for s in range(STEPS):
        opt.zero_grad()
        total = 0.0
        for k in range(2):
            x, y = batch(s, k)
            logits, _ = tm.forward(cfg, params(), x)
            loss, _ = tm.xent(logits, y)
            (loss / 2).backward()
            total += loss.item()
        norm = torch.nn.utils.clip_grad_norm_(list(trained.values()), clip).item()
        clipped += norm > clip
        for g in opt.param_groups:
            g["lr"] = schedule(s)
        opt.step()
        for what, ours, ref in (("loss", c["losses"][s], total / 2), ("grad norm", c["grad_norms"][s], norm),
                                ("lr", c["lrs"][s], schedule(s))):
            check(abs(ours - ref) <= RTOL * abs(ref), f"{tag}: step {s + 1} {what}: engine {ours:.9g} vs torch {ref:.9g}")
    final = tm.st_read(os.path.join(tmp, "final.safetensors"))
    tworst = 0.0
    for name, p in trained.items():
        ref = p.detach()
        e = (final[name].double() - ref).abs().max().item()
        scale = ref.abs().max().item()
        tworst = max(tworst, e / scale)
        check(e <= RTOL * scale, f"{tag}: {name} after {STEPS} steps: max err {e:.3g} vs max |value| {scale:.3g}")
    check(clipped > 0, f"{tag}: clipping never engaged, so it was not tested")
    print(f"{tag}: loss {c['loss0']:.5f} (torch {loss0:.5f}), {len(trained)} gradients within "
          f"{worst:.1e} of their max, {STEPS} steps {c['losses'][0]:.4f} -> {c['losses'][-1]:.4f}, tensors within "
          f"{tworst:.1e} relative after them (clipped in {clipped} steps)")


def main():
    exe = sys.argv[1]
    gpt2 = dict(family="gpt2", n_layers=2, dim=32, n_heads=4, n_kv_heads=4, ffn_dim=64, vocab_size=256, context=64,
                tied=True, norm_eps=1e-5, rope_theta=10000.0, rope_layout="half")
    llama = dict(family="llama", n_layers=2, dim=32, n_heads=4, n_kv_heads=2, ffn_dim=48, vocab_size=256,
                 context=64, tied=False, norm_eps=1e-5, rope_theta=10000.0, rope_layout="half")
    cases = [
        dict(name="gpt2 tied full", cfg=gpt2, seed=5),
        dict(name="llama gqa untied full", cfg=llama, seed=6),
        dict(name="gpt2 lora c_attn,c_fc", cfg=gpt2, seed=7, clip=0.02,
             lora=dict(r=4, alpha=8, targets=["c_attn", "c_fc"])),
        dict(name="llama lora all", cfg=llama, seed=8, clip=0.02,
             lora=dict(r=2, alpha=6, targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                              "down_proj"])),
    ]
    for case in cases:
        with tempfile.TemporaryDirectory() as tmp:
            run_case(exe, case, tmp)
    print(f"sft vs torch: {CHECKS[0]} checks, {len(FAILS)} failed", file=sys.stderr)
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
