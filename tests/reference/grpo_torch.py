#!/usr/bin/env python3
"""The GRPO head of the C engine (src/train/grpo.c) against plain torch, on tiny random GPT-2
(tied) and Llama (GQA, untied) policies with a separate random reference model.

tests/grpo_steps.c writes the policy and the reference as model directories, completion rows
(targets only on the completion), an advantage per row, per-position old log-probabilities (the
policy's own, perturbed so the clipping engages) and the reference's, the loss and every
gradient of the first micro-batch, and runs 10 AdamW steps through train_loop_run. Here, in
float64, with tests/reference/torch_model.py and the loss as TRL's GRPOTrainer computes it:
  coef_1 = exp(logp - old), coef_2 = clamp(coef_1, 1 - eps, 1 + eps_high)
  per_token = -min(coef_1 A, coef_2 A) + beta (exp(ref - logp) - (ref - logp) - 1)
  grpo: ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
  bnpo, dapo: (per_token * mask).sum() / mask.sum()
  dr_grpo: (per_token * mask).sum() / (rows * max_completion_length)
Checked: the old/reference log-probabilities (grpo_token_logps, 1e-5); loss (1e-4 relative, or
1e-7 absolute near zero); every gradient within 1e-3 of that tensor's largest |gradient|;
clip_ratio/region_mean, entropy and kl of step 1; 10 AdamW steps within 1e-3.
With LoRA (the cases named "lora", every aggregation): the policy is the base plus grpo_steps's
adapter (B random) through lora_torch.py's layer, the reference is the base with the adapter off,
and the adapter's tensors are the trained ones. Cases with "adv" draw rewards in groups and take
the advantages from the engine's grpo_advantages, checked here against TRL's: group (r - mean) /
(std + 1e-4), std unbiased, and RLOO's leave-one-out r - mean of the other G - 1.

Usage: grpo_torch.py GRPO_STEPS_EXE
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
from lora_torch import lora_params  # noqa: E402
from test_train_torch import HP, STEPS, adamw_steps, schedule  # noqa: E402

GPT2 = ["--family", "gpt2", "--layers", "2", "--dim", "32", "--heads", "4", "--ffn", "128", "--vocab", "61",
        "--context", "32"]
LLAMA = ["--family", "llama", "--layers", "2", "--dim", "32", "--heads", "4", "--kv-heads", "2", "--ffn", "48",
         "--vocab", "67", "--context", "32", "--untied"]
CASES = [
    dict(name="gpt2 grpo", args=GPT2, loss="grpo", beta=0.0, eps=0.2, eps_high=0.2, B=4, T=12, A=1),
    dict(name="llama gqa bnpo beta 0.04 accum 2", args=LLAMA, loss="bnpo", beta=0.04, eps=0.2, eps_high=0.28, B=4, T=12, A=2),
    dict(name="gpt2 dr_grpo beta 0.1", args=GPT2, loss="dr_grpo", beta=0.1, eps=0.1, eps_high=0.1, B=6, T=10, A=1),
    dict(name="llama gqa dapo clip-higher", args=LLAMA, loss="dapo", beta=0.0, eps=0.2, eps_high=0.28, B=4, T=12, A=1),
    dict(name="gpt2 lora grpo beta 0.04 group adv", args=GPT2, loss="grpo", beta=0.04, eps=0.2, eps_high=0.2, B=4, T=12,
         A=1, adv=("group", 2), lora=dict(r=4, alpha=8, targets=["c_attn", "c_fc"])),
    dict(name="llama gqa lora bnpo accum 2", args=LLAMA, loss="bnpo", beta=0.0, eps=0.2, eps_high=0.28, B=4, T=12, A=2,
         lora=dict(r=2, alpha=6, targets=["q_proj", "v_proj", "down_proj"])),
    dict(name="gpt2 lora dr_grpo beta 0.1", args=GPT2, loss="dr_grpo", beta=0.1, eps=0.1, eps_high=0.1, B=6, T=10, A=1,
         lora=dict(r=2, alpha=4, targets=["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"])),
    dict(name="llama gqa lora dapo rloo", args=LLAMA, loss="dapo", beta=0.04, eps=0.2, eps_high=0.28, B=6, T=12, A=1,
         adv=("rloo", 3), lora=dict(r=4, alpha=8, targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                           "up_proj", "down_proj"])),
    dict(name="gpt2 lora grpo rloo", args=GPT2, loss="grpo", beta=0.0, eps=0.2, eps_high=0.2, B=4, T=12, A=1,
         adv=("rloo", 4), lora=dict(r=4, alpha=8, targets=["c_attn"])),
]
MAXC = 16

failures = []


def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def token_logps(cfg, params, tokens, targets):
    logits, _ = tm.forward(cfg, params, tokens)
    lp = torch.log_softmax(logits.double(), -1)
    mask = targets >= 0
    return lp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask, mask


def grpo_loss(case, cfg, params, tokens, targets, adv, old, ref):
    """TRL's GRPOTrainer._compute_loss, and its metrics."""
    logits, _ = tm.forward(cfg, params, tokens)
    lpa = torch.log_softmax(logits.double(), -1)
    mask = (targets >= 0).double()
    lp = lpa.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    A = adv.double().unsqueeze(-1)
    c1 = torch.exp(lp - old)
    c2 = torch.clamp(c1, 1 - case["eps"], 1 + case["eps_high"])
    per = -torch.min(c1 * A, c2 * A)
    kl = torch.exp(ref - lp) - (ref - lp) - 1
    if case["beta"] > 0:
        per = per + case["beta"] * kl
    if case["loss"] == "grpo":
        loss = ((per * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    elif case["loss"] == "dr_grpo":
        loss = (per * mask).sum() / (per.shape[0] * MAXC)
    else:
        loss = (per * mask).sum() / mask.sum()
    n = mask.sum()
    low = (c1 < 1 - case["eps"]) & (A < 0)
    high = (c1 > 1 + case["eps_high"]) & (A > 0)
    ent = -(lpa.exp() * lpa).sum(-1)
    m = {"clip_ratio/region_mean": ((low | high).double() * mask).sum().item() / n.item(),
         "entropy": (ent.detach() * mask).sum().item() / n.item()}
    if case["beta"] > 0:
        m["kl"] = (kl.detach() * mask).sum().item() / n.item()
    return loss, m


def run_case(exe, case, tmp):
    tag = case["name"]
    out = os.path.join(tmp, tag.replace(" ", "_"))
    B, T, A = case["B"], case["T"], case["A"]
    cmd = [exe, *case["args"], "--loss-type", case["loss"], "--beta", str(case["beta"]), "--epsilon", str(case["eps"]),
           "--epsilon-high", str(case["eps_high"]), "--max-completion", str(MAXC),
           "--batch", str(B), "--seq", str(T), "--accum", str(A), "--steps", str(STEPS),
           "--lr", str(HP["lr"]), "--min-lr", str(HP["min_lr"]), "--warmup", str(HP["warmup"]),
           "--weight-decay", str(HP["weight_decay"]), "--grad-clip", str(HP["grad_clip"]), "--seed", "7",
           "--out", out]
    lora = case.get("lora")
    if lora:
        cmd += ["--lora-rank", str(lora["r"]), "--lora-alpha", str(lora["alpha"]), "--lora-targets", ",".join(lora["targets"])]
    if case.get("adv"):
        cmd += ["--advantage", case["adv"][0], "--group", str(case["adv"][1])]
    c = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)
    cfg = tm.config_from_hf(json.load(open(os.path.join(out, "policy", "config.json"))))
    base = {k: v.double() for k, v in tm.st_read(os.path.join(out, "policy", "model.safetensors")).items()}
    if lora:
        trained = {k: v.double().requires_grad_() for k, v in
                   tm.st_read(os.path.join(out, "adapter", "adapter_model.safetensors")).items()}
        refp = base  # the base with the adapter off
    else:
        trained = {k: v.clone().requires_grad_() for k, v in base.items()}
        refp = {k: v.double() for k, v in tm.st_read(os.path.join(out, "ref", "model.safetensors")).items()}

    class Policy:
        """The model dict the loss reads: the trained tensors, or the base with the adapter's layers."""

        def __call__(self):
            return lora_params(cfg, base, trained, lora["alpha"] / lora["r"]) if lora else trained
    params = Policy()
    raw = open(os.path.join(out, "batches.bin"), "rb").read()
    rows = STEPS * A * B
    k = 2 * rows * T * 4
    ints = torch.frombuffer(bytearray(raw[:k]), dtype=torch.int32).long().reshape(2, STEPS, A, B, T)
    toks, tgts = ints[0], ints[1]
    adv = torch.frombuffer(bytearray(raw[k:k + rows * 4]), dtype=torch.float32).double().reshape(STEPS, A, B)
    k2 = k + rows * 4 + 2 * rows * T * 4
    fl = torch.frombuffer(bytearray(raw[k + rows * 4:k2]), dtype=torch.float32).double().reshape(2, STEPS, A, B, T)
    old, ref = fl[0], fl[1]
    if case.get("adv"):
        kind, G = case["adv"]
        rw = torch.frombuffer(bytearray(raw[k2:]), dtype=torch.float32).double().reshape(-1, G)
        if kind == "rloo":
            want = rw - (rw.sum(1, keepdim=True) - rw) / (G - 1)
        else:
            want = (rw - rw.mean(1, keepdim=True)) / (rw.std(1, keepdim=True) + 1e-4)
        err = (want.reshape(-1) - adv.reshape(-1)).abs().max().item()
        check(err <= 1e-5 * (1 + want.abs().max().item()),
              f"{tag}: {kind} advantages of {rw.shape[0]} groups of {G} as TRL computes them (max err {err:.2e})")

    with torch.no_grad():
        worst = 0.0
        for s in range(STEPS):
            for j in range(A):
                r, mask = token_logps(cfg, refp, toks[s, j], tgts[s, j])
                worst = max(worst, ((ref[s, j] - r).abs() * mask).max().item() / r.abs().max().item())
    check(worst <= 1e-5, f"{tag}: reference log-probabilities (grpo_token_logps) match torch's (worst rel {worst:.2e})")

    dump = tm.st_read(os.path.join(out, "grads.safetensors"))
    loss, metrics = grpo_loss(case, cfg, params(), toks[0, 0], tgts[0, 0], adv[0, 0], old[0, 0], ref[0, 0])
    loss.backward()
    cl = dump["loss"].double().item()
    check(abs(cl - loss.item()) <= 1e-4 * abs(loss.item()) + 1e-7, f"{tag}: loss {cl:.7g} vs torch {loss.item():.7g}")
    check(sorted(n for n in dump if n != "loss") == sorted(f"grad.{n}" for n in trained),
          f"{tag}: exactly the {len(trained)} trained tensors' gradients are dumped")
    worst = 0.0
    for name, p in trained.items():
        g_ref, g = p.grad, dump[f"grad.{name}"].double()
        scale = g_ref.abs().max().item()
        err = (g - g_ref).abs().max().item()
        worst = max(worst, err / scale if scale > 0 else err)
        if not err <= 1e-3 * scale + 1e-12:
            check(False, f"{tag}: gradient of {name}: max err {err:.3g} vs max |grad| {scale:.3g}")
    check(worst <= 1e-3, f"{tag}: all {len(trained)} gradients within 1e-3 of their largest value (worst {worst:.2e})")
    for p in trained.values():
        p.grad = None
    step1 = {}
    with torch.no_grad():
        for j in range(A):
            _, mk = grpo_loss(case, cfg, params(), toks[0, j], tgts[0, j], adv[0, j], old[0, j], ref[0, j])
            for n, v in mk.items():
                step1[n] = step1.get(n, 0.0) + v / A
    bad = [n for n, v in step1.items() if n not in c["metrics"] or abs(c["metrics"][n] - v) > 1e-4 * (1 + abs(v))]
    check(not bad, f"{tag}: step-1 metrics agree ({', '.join(f'{n} {v:.4f}' for n, v in sorted(step1.items()))})"
          f"{' BAD: ' + str(bad) + ' ' + str(c['metrics']) if bad else ''}")
    losses, norms = adamw_steps(trained, A, lambda s, j: grpo_loss(case, cfg, params(), toks[s, j], tgts[s, j], adv[s, j],
                                                                  old[s, j], ref[s, j])[0])
    with torch.no_grad():
        final = grpo_loss(case, cfg, params(), toks[0, 0], tgts[0, 0], adv[0, 0], old[0, 0], ref[0, 0])[0].item()
    bad = [s for s in range(STEPS) if not (abs(c["losses"][s] - losses[s]) <= 1e-3 * abs(losses[s]) + 1e-6
                                           and abs(c["grad_norms"][s] - norms[s]) <= 1e-3 * abs(norms[s])
                                           and abs(c["lrs"][s] - schedule(s)) <= 1e-6)]
    for s in bad:
        print(f"  step {s + 1}: loss {c['losses'][s]:.7g} vs {losses[s]:.7g}, grad norm {c['grad_norms'][s]:.7g} "
              f"vs {norms[s]:.7g}")
    check(not bad, f"{tag}: {STEPS} AdamW steps: losses {losses[0]:.4f} -> {losses[-1]:.4f} and gradient norms agree "
          f"with torch.optim.AdamW to 1e-3")
    check(abs(c["final_loss"] - final) <= 1e-3 * abs(final) + 1e-6,
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
