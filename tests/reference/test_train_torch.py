#!/usr/bin/env python3
"""Ten AdamW steps of the C engine against torch.optim.AdamW on the same model and batches.

For small random models of both families (GPT-2 tied; Llama with grouped-query attention, an
untied head and gradient accumulation over 2 micro-batches), tests/train_steps.c writes the
initial model directory and the token batches, runs 10 train_step calls (weight decay 0.1 on
matrices only, global-norm clipping at 1.0 — active in these runs — betas (0.9, 0.95), warmup 3
then cosine to min_lr) and prints its losses. The same steps run here with the reference model
of tests/reference/torch_model.py in float64 and torch.optim.AdamW with the same schedule, decay
groups, clipping (torch.nn.utils.clip_grad_norm_) and accumulation (loss / accum per
micro-batch). Checked to 1e-3 relative: the loss of each of the 10 steps, the loss after the
last update, and the gradient norm before clipping at every step.

Usage: test_train_torch.py TRAIN_STEPS_EXE
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

RTOL = 1e-3
STEPS = 10
HP = dict(lr=1e-2, min_lr=1e-3, warmup=3, weight_decay=0.1, grad_clip=1.0, beta1=0.9, beta2=0.95, eps=1e-8)

CASES = [
    dict(name="gpt2 tied", args=["--family", "gpt2", "--layers", "2", "--dim", "64", "--heads", "4", "--ffn", "256",
                                 "--vocab", "97", "--context", "32", "--tied"], B=4, T=16, accum=1),
    dict(name="llama gqa untied accum 2", args=["--family", "llama", "--layers", "2", "--dim", "64", "--heads", "4",
                                                "--kv-heads", "2", "--ffn", "96", "--vocab", "101", "--context", "32",
                                                "--untied"], B=3, T=16, accum=2),
]


def schedule(step):
    """optim_schedule_lr: linear warmup to lr, then cosine to min_lr over the remaining steps."""
    if step < HP["warmup"]:
        return HP["lr"] * (step + 1) / HP["warmup"]
    ratio = min(1.0, (step - HP["warmup"]) / max(1, STEPS - HP["warmup"]))
    return HP["min_lr"] + 0.5 * (1 + math.cos(math.pi * ratio)) * (HP["lr"] - HP["min_lr"])


def decays(name, t):
    """Weight decay on projection matrices only: not on embeddings, the head, norms or biases."""
    return t.dim() == 2 and not any(s in name for s in ("wte", "wpe", "embed_tokens", "lm_head"))


def adamw_steps(params, A, micro_loss):
    """STEPS steps of torch.optim.AdamW with the engine's groups, schedule, clipping and
    accumulation ((loss / A).backward() per micro-batch); micro_loss(step, k) is a scalar tensor.
    Returns the per-step mean losses and gradient norms before clipping."""
    groups = [
        {"params": [p for n, p in params.items() if decays(n, p)], "weight_decay": HP["weight_decay"]},
        {"params": [p for n, p in params.items() if not decays(n, p)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"])
    losses, norms = [], []
    for s in range(STEPS):
        opt.zero_grad()
        total = 0.0
        for k in range(A):
            loss = micro_loss(s, k)
            (loss / A).backward()
            total += loss.item()
        losses.append(total / A)
        norms.append(torch.nn.utils.clip_grad_norm_(list(params.values()), HP["grad_clip"]).item())
        for g in opt.param_groups:
            g["lr"] = schedule(s)
        opt.step()
    return losses, norms


def close(a, b):
    return abs(a - b) <= RTOL * abs(b)


def run_case(exe, case, tmp):
    out = os.path.join(tmp, case["name"].replace(" ", "_"))
    cmd = [exe, *case["args"], "--batch", str(case["B"]), "--seq", str(case["T"]), "--accum", str(case["accum"]),
           "--steps", str(STEPS), "--lr", str(HP["lr"]), "--min-lr", str(HP["min_lr"]), "--warmup", str(HP["warmup"]),
           "--weight-decay", str(HP["weight_decay"]), "--grad-clip", str(HP["grad_clip"]), "--seed", "11",
           "--out", out]
    c = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)

    cfg = tm.config_from_hf(json.load(open(os.path.join(out, "config.json"))))
    params = {k: v.double().requires_grad_() for k, v in tm.st_read(os.path.join(out, "model.safetensors")).items()}
    B, T, A = case["B"], case["T"], case["accum"]
    raw = bytearray(open(os.path.join(out, "batches.bin"), "rb").read())  # int32, little-endian
    raw = torch.frombuffer(raw, dtype=torch.int32).reshape(2, STEPS, A, B, T).long()
    inputs, targets = raw[0], raw[1]

    def micro_loss(s, k):
        logits, _ = tm.forward(cfg, params, inputs[s, k])
        return tm.xent(logits, targets[s, k])[0]

    losses, norms = adamw_steps(params, A, micro_loss)
    with torch.no_grad():
        logits, _ = tm.forward(cfg, params, inputs[0, 0])
        final = tm.xent(logits, targets[0, 0])[0].item()

    ok = True
    for s in range(STEPS):
        for what, ours, ref in (("loss", c["losses"][s], losses[s]), ("grad norm", c["grad_norms"][s], norms[s])):
            if not close(ours, ref):
                print(f"FAIL {case['name']}: step {s + 1} {what}: engine {ours:.9g} vs torch {ref:.9g}")
                ok = False
        if not close(c["lrs"][s], schedule(s)):
            print(f"FAIL {case['name']}: step {s + 1} lr {c['lrs'][s]} vs {schedule(s)}")
            ok = False
    if not close(c["final_loss"], final):
        print(f"FAIL {case['name']}: loss after step {STEPS}: engine {c['final_loss']:.9g} vs torch {final:.9g}")
        ok = False
    clipped = sum(1 for x in c["clip"] if x < 1)
    if clipped == 0:
        print(f"FAIL {case['name']}: clipping never engaged, so it was not tested")
        ok = False
    worst = max(abs(a - b) / abs(b) for a, b in zip(c["losses"] + [c["final_loss"]], losses + [final]))
    print(f"{'ok' if ok else 'FAIL'}: {case['name']}: losses {losses[0]:.4f} -> {final:.4f} agree with "
          f"torch.optim.AdamW (worst relative difference {worst:.2e}, clipped in {clipped}/{STEPS} steps)")
    return ok


def main():
    exe = sys.argv[1]
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        results = [run_case(exe, case, tmp) for case in CASES]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
