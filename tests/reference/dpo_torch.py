#!/usr/bin/env python3
"""The DPO family of losses of the C engine (src/train/dpo.c) against plain torch, on tiny random
GPT-2 (tied) and Llama (GQA, untied) policies with a separate random reference model.

tests/dpo_steps.c writes the policy and the reference as model directories, the pair batches
(row 2i prompt + chosen, row 2i+1 prompt + rejected, targets only on the replies), the
reference log-probabilities it computed (dpo_row_logps), the loss and every gradient of the first
micro-batch, and runs 10 AdamW steps through train_loop_run. Here, in float64, with the model of
tests/reference/torch_model.py and the losses written as TRL's DPOTrainer writes them
(trl/trainer/dpo_trainer.py, dpo_loss):
  logits = (pi_c - pi_r) - (ref_c - ref_r)
  sigmoid  -logsigmoid(beta logits) (1 - ls) - logsigmoid(-beta logits) ls
  robust   (-logsigmoid(beta logits) (1 - ls) + logsigmoid(-beta logits) ls) / (1 - 2 ls)
  hinge    relu(1 - beta logits)
  ipo      (logits - 1 / (2 beta))^2   with log-probabilities averaged over the reply's tokens
  + rpo_alpha * cross-entropy of the chosen replies' tokens (mean over tokens)
Checked: the reference log-probabilities (1e-5 relative); loss (1e-4 relative); every gradient
within 1e-3 of that tensor's largest |gradient|; the step-1 metrics under TRL's names (1e-4);
10 optimizer steps (losses, gradient norms, learning rates) within 1e-3 of torch.optim.AdamW.

Usage: dpo_torch.py DPO_STEPS_EXE
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_model as tm  # noqa: E402
from test_train_torch import HP, STEPS, adamw_steps, schedule  # noqa: E402

GPT2 = ["--family", "gpt2", "--layers", "2", "--dim", "32", "--heads", "4", "--ffn", "128", "--vocab", "61",
        "--context", "32"]
LLAMA = ["--family", "llama", "--layers", "2", "--dim", "32", "--heads", "4", "--kv-heads", "2", "--ffn", "48",
         "--vocab", "67", "--context", "32", "--untied"]
CASES = [
    dict(name="gpt2 sigmoid", args=GPT2, loss="sigmoid", beta=0.1, ls=0.0, rpo=0.0, B=4, T=12, A=1),
    dict(name="llama gqa ipo accum 2", args=LLAMA, loss="ipo", beta=0.5, ls=0.0, rpo=0.0, B=4, T=12, A=2),
    dict(name="gpt2 hinge", args=GPT2, loss="hinge", beta=0.3, ls=0.0, rpo=0.0, B=6, T=10, A=1),
    dict(name="llama gqa robust ls 0.1", args=LLAMA, loss="robust", beta=0.2, ls=0.1, rpo=0.0, B=4, T=12, A=1),
    dict(name="gpt2 cdpo ls 0.2 + rpo 0.5", args=GPT2, loss="sigmoid", beta=0.1, ls=0.2, rpo=0.5, B=4, T=12, A=2),
]

failures = []


def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def row_logps(cfg, params, tokens, targets):
    logits, _ = tm.forward(cfg, params, tokens)
    lp = torch.log_softmax(logits.double(), -1)
    mask = targets >= 0
    picked = lp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    return picked.sum(-1), mask.sum(-1)


def dpo_loss(case, cfg, params, tokens, targets, ref):
    """TRL's dpo_loss, and its metrics."""
    lp, n = row_logps(cfg, params, tokens, targets)
    ref = ref.double()
    if case["loss"] == "ipo":
        lp, ref = lp / n, ref / n
    pc, pr, rc, rr = lp[0::2], lp[1::2], ref[0::2], ref[1::2]
    logits = (pc - pr) - (rc - rr)
    beta, ls = case["beta"], case["ls"]
    if case["loss"] == "sigmoid":
        losses = -F.logsigmoid(beta * logits) * (1 - ls) - F.logsigmoid(-beta * logits) * ls
    elif case["loss"] == "robust":
        losses = (-F.logsigmoid(beta * logits) * (1 - ls) + F.logsigmoid(-beta * logits) * ls) / (1 - 2 * ls)
    elif case["loss"] == "hinge":
        losses = torch.relu(1 - beta * logits)
    else:
        losses = (logits - 1 / (2 * beta)) ** 2
    loss = losses.mean()
    metrics = {}
    if case["rpo"] > 0:
        raw, cnt = row_logps(cfg, params, tokens[0::2], targets[0::2])
        nll = -raw.sum() / cnt.sum()
        loss = loss + case["rpo"] * nll
        metrics["nll_loss"] = nll.item()
    cr, rj = beta * (pc - rc).detach(), beta * (pr - rr).detach()
    metrics.update({"rewards/chosen": cr.mean().item(), "rewards/rejected": rj.mean().item(),
                    "rewards/accuracies": (cr > rj).double().mean().item(),
                    "rewards/margins": (cr - rj).mean().item(),
                    "logps/chosen": pc.detach().mean().item(), "logps/rejected": pr.detach().mean().item()})
    return loss, metrics


def run_case(exe, case, tmp):
    tag = case["name"]
    out = os.path.join(tmp, tag.replace(" ", "_"))
    B, T, A = case["B"], case["T"], case["A"]
    cmd = [exe, *case["args"], "--loss-type", case["loss"], "--beta", str(case["beta"]),
           "--label-smoothing", str(case["ls"]), "--rpo-alpha", str(case["rpo"]),
           "--batch", str(B), "--seq", str(T), "--accum", str(A), "--steps", str(STEPS),
           "--lr", str(HP["lr"]), "--min-lr", str(HP["min_lr"]), "--warmup", str(HP["warmup"]),
           "--weight-decay", str(HP["weight_decay"]), "--grad-clip", str(HP["grad_clip"]), "--seed", "7",
           "--out", out]
    c = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)
    cfg = tm.config_from_hf(json.load(open(os.path.join(out, "policy", "config.json"))))
    params = {k: v.double().requires_grad_() for k, v in tm.st_read(os.path.join(out, "policy", "model.safetensors")).items()}
    refp = {k: v.double() for k, v in tm.st_read(os.path.join(out, "ref", "model.safetensors")).items()}
    raw = open(os.path.join(out, "batches.bin"), "rb").read()
    rows = STEPS * A * B
    ints = torch.frombuffer(bytearray(raw[: 2 * rows * T * 4]), dtype=torch.int32).long().reshape(2, STEPS, A, B, T)
    toks, tgts = ints[0], ints[1]
    labels = torch.frombuffer(bytearray(raw[2 * rows * T * 4:]), dtype=torch.float32).double().reshape(STEPS, A, B)

    with torch.no_grad():
        worst = 0.0
        for s in range(STEPS):
            for k in range(A):
                r, _ = row_logps(cfg, refp, toks[s, k], tgts[s, k])
                worst = max(worst, ((labels[s, k] - r).abs() / r.abs()).max().item())
    check(worst <= 1e-5, f"{tag}: reference log-probabilities (dpo_row_logps) match torch's (worst rel {worst:.2e})")

    dump = tm.st_read(os.path.join(out, "grads.safetensors"))
    loss, metrics = dpo_loss(case, cfg, params, toks[0, 0], tgts[0, 0], labels[0, 0])
    loss.backward()
    cl = dump["loss"].double().item()
    check(abs(cl - loss.item()) <= 1e-4 * abs(loss.item()), f"{tag}: loss {cl:.7g} vs torch {loss.item():.7g}")
    worst = 0.0
    for name, p in params.items():
        g_ref, g = p.grad, dump[f"grad.{name}"].double()
        scale = g_ref.abs().max().item()
        err = (g - g_ref).abs().max().item()
        worst = max(worst, err / scale if scale > 0 else err)
        if not err <= 1e-3 * scale + 1e-12:
            check(False, f"{tag}: gradient of {name}: max err {err:.3g} vs max |grad| {scale:.3g}")
    check(worst <= 1e-3, f"{tag}: all {len(params)} gradients within 1e-3 of their largest value (worst {worst:.2e})")

    for p in params.values():
        p.grad = None
    step1 = {}
    with torch.no_grad():
        for k in range(A):
            _, mk = dpo_loss(case, cfg, params, toks[0, k], tgts[0, k], labels[0, k])
            for n, v in mk.items():
                step1[n] = step1.get(n, 0.0) + v / A
    bad = [n for n, v in step1.items() if n not in c["metrics"] or abs(c["metrics"][n] - v) > 1e-4 * (1 + abs(v))]
    check(not bad and len(step1) == len(c["metrics"]),
          f"{tag}: step-1 metrics under TRL's names agree ({', '.join(sorted(step1))}){' BAD: ' + str(bad) if bad else ''}")

    losses, norms = adamw_steps(params, A, lambda s, k: dpo_loss(case, cfg, params, toks[s, k], tgts[s, k], labels[s, k])[0])
    with torch.no_grad():
        final = dpo_loss(case, cfg, params, toks[0, 0], tgts[0, 0], labels[0, 0])[0].item()
    bad = [s for s in range(STEPS) if not (abs(c["losses"][s] - losses[s]) <= 1e-3 * abs(losses[s])
                                           and abs(c["grad_norms"][s] - norms[s]) <= 1e-3 * abs(norms[s])
                                           and abs(c["lrs"][s] - schedule(s)) <= 1e-6)]
    for s in bad:
        print(f"  step {s + 1}: loss {c['losses'][s]:.7g} vs {losses[s]:.7g}, grad norm {c['grad_norms'][s]:.7g} "
              f"vs {norms[s]:.7g}")
    check(not bad, f"{tag}: {STEPS} AdamW steps: losses {losses[0]:.4f} -> {losses[-1]:.4f} and gradient norms agree "
          f"with torch.optim.AdamW to 1e-3")
    check(abs(c["final_loss"] - final) <= 1e-3 * abs(final) + 1e-9,
          f"{tag}: loss after step {STEPS}: engine {c['final_loss']:.7g} vs torch {final:.7g}")


def main():
    exe = sys.argv[1]
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            run_case(exe, case, tmp)
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
