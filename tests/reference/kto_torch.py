#!/usr/bin/env python3
"""The KTO losses of the C engine (src/train/kto.c) against plain torch, on tiny random GPT-2
(tied) and Llama (GQA, untied) policies, full fine-tuning and LoRA.

tests/kto_steps.c writes the policy and its reference (a second random model, or with LoRA the
base with the adapter off), the micro-batches (rows 0..n-1 prompt_i + completion_i, rows n..2n-1
the KL rows prompt_i + completion_{i-1}), the reference log-probabilities it computed, the
thumbs-up/down of each example, the loss and every trained gradient of the first micro-batch,
and runs 10 AdamW steps through train_loop_run. Here, in float64, with the model of
tests/reference/torch_model.py (and lora_torch.py's LoRA layer), the loss written as TRL's
KTOTrainer writes it (trl/trainer/kto_trainer.py, kto_loss):
  kl = clamp((policy_KL_logps - reference_KL_logps).mean().detach(), min=0)   (kto only)
  kto:                chosen 1 - sigmoid(beta (logratio - kl)), rejected 1 - sigmoid(beta (kl - logratio))
  apo_zero_unpaired:  chosen 1 - sigmoid(beta logratio),        rejected sigmoid(beta logratio)
  loss = cat(desirable_weight * chosen, undesirable_weight * rejected).nanmean()
Checked: the reference log-probabilities (1e-5 relative); loss (1e-4 relative); every trained
gradient within 1e-3 of that tensor's largest |gradient|; the step-1 metrics under TRL's names
(1e-4); 10 optimizer steps (losses, gradient norms, learning rates) within 1e-3 of
torch.optim.AdamW; and that the KL rows get no gradient (the loss with the KL rows' logits
detached has the same gradient: it is computed that way here).

Usage: kto_torch.py KTO_STEPS_EXE
"""
import json
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_model as tm  # noqa: E402
from lora_torch import lora_params  # noqa: E402
from test_train_torch import HP, STEPS, adamw_steps, schedule  # noqa: E402

GPT2 = ["--family", "gpt2", "--layers", "2", "--dim", "32", "--heads", "4", "--ffn", "128", "--vocab", "61",
        "--context", "32"]
LLAMA = ["--family", "llama", "--layers", "2", "--dim", "32", "--heads", "4", "--kv-heads", "2", "--ffn", "48",
         "--vocab", "67", "--context", "32", "--untied"]
CASES = [
    dict(name="gpt2 kto", args=GPT2, loss="kto", beta=0.1, dw=1.0, uw=1.0, B=8, T=12, A=1),
    dict(name="llama gqa kto weights 1.33/0.7 accum 2", args=LLAMA, loss="kto", beta=0.5, dw=1.33, uw=0.7, B=6, T=12,
         A=2),
    dict(name="gpt2 apo_zero_unpaired", args=GPT2, loss="apo_zero_unpaired", beta=0.3, dw=1.0, uw=1.0, B=4, T=10,
         A=1),
    dict(name="gpt2 kto lora c_attn,c_fc", args=GPT2, loss="kto", beta=0.2, dw=1.0, uw=1.5, B=6, T=12, A=1,
         lora=dict(r=4, alpha=8, targets=["c_attn", "c_fc"])),
    dict(name="llama kto lora all", args=LLAMA, loss="kto", beta=0.1, dw=1.0, uw=1.0, B=8, T=12, A=2,
         lora=dict(r=2, alpha=6, targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                          "down_proj"])),
]

failures = []
kl_seen = []  # step-1 KL estimates of the kto cases: the clamp must not hide the KL path everywhere


def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def row_logps(cfg, params, tokens, targets):
    logits, _ = tm.forward(cfg, params, tokens)
    lp = torch.log_softmax(logits.double(), -1)
    mask = targets >= 0
    picked = lp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    return picked.sum(-1)


def kto_loss(case, cfg, params, tokens, targets, ref, desirable):
    """TRL's kto_loss and get_batch_loss_metrics on one micro-batch, and its metrics."""
    kl_rows = case["loss"] == "kto"
    n = tokens.shape[0] // (2 if kl_rows else 1)
    lp = row_logps(cfg, params, tokens[:n], targets[:n])
    ref = ref.double()
    d = desirable[:n].bool()
    if kl_rows:
        with torch.no_grad():  # TRL: the KL completions' logits under no_grad
            kl_lp = row_logps(cfg, params, tokens[n:], targets[n:])
        kl = (kl_lp - ref[n:]).mean().clamp(min=0)
    else:
        kl = torch.zeros((), dtype=torch.float64)
    beta = case["beta"]
    pc, pr = lp[d], lp[~d]
    cr, rr = pc - ref[:n][d], pr - ref[:n][~d]
    if case["loss"] == "kto":
        chosen = 1 - torch.sigmoid(beta * (cr - kl))
        rejected = 1 - torch.sigmoid(beta * (kl - rr))
    else:
        chosen = 1 - torch.sigmoid(beta * cr)
        rejected = torch.sigmoid(beta * rr)
    loss = torch.cat((case["dw"] * chosen, case["uw"] * rejected)).nanmean()
    m = {"kl": kl.item(), "count/chosen": float(len(pc)), "count/rejected": float(len(pr))}
    if len(pc):
        m["rewards/chosen"] = (beta * cr).mean().item()
        m["logps/chosen"] = pc.mean().item()
    if len(pr):
        m["rewards/rejected"] = (beta * rr).mean().item()
        m["logps/rejected"] = pr.mean().item()
    if len(pc) and len(pr):
        m["rewards/margins"] = m["rewards/chosen"] - m["rewards/rejected"]
    return loss, m


def run_case(exe, case, tmp):
    tag = case["name"]
    out = os.path.join(tmp, tag.replace(" ", "_").replace("/", "_"))
    B, T, A = case["B"], case["T"], case["A"]
    lora = case.get("lora")
    clip = 0.02 if lora else HP["grad_clip"]
    cmd = [exe, *case["args"], "--loss-type", case["loss"], "--beta", str(case["beta"]),
           "--desirable-weight", str(case["dw"]), "--undesirable-weight", str(case["uw"]),
           "--batch", str(B), "--seq", str(T), "--accum", str(A), "--steps", str(STEPS),
           "--lr", str(HP["lr"]), "--min-lr", str(HP["min_lr"]), "--warmup", str(HP["warmup"]),
           "--weight-decay", str(HP["weight_decay"]), "--grad-clip", str(clip), "--seed", "7", "--out", out]
    if lora:
        cmd += ["--lora-rank", str(lora["r"]), "--lora-alpha", str(lora["alpha"]), "--lora-targets",
                ",".join(lora["targets"])]
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if res.returncode != 0:
        check(False, f"{tag}: kto_steps failed: {res.stderr.strip()}")
        return
    c = json.loads(res.stdout)
    cfg = tm.config_from_hf(json.load(open(os.path.join(out, "policy", "config.json"))))
    base = {k: v.double() for k, v in tm.st_read(os.path.join(out, "policy", "model.safetensors")).items()}
    if lora:
        trained = {k: v.double().requires_grad_() for k, v in
                   tm.st_read(os.path.join(out, "adapter", "adapter_model.safetensors")).items()}
        scaling = lora["alpha"] / lora["r"]

        def params():
            return lora_params(cfg, base, trained, scaling)
        refp = base  # the base with the adapter off
    else:
        trained = {k: v.clone().requires_grad_() for k, v in base.items()}

        def params():
            return trained
        refp = {k: v.double() for k, v in tm.st_read(os.path.join(out, "ref", "model.safetensors")).items()}
    raw = open(os.path.join(out, "batches.bin"), "rb").read()
    rows = STEPS * A * B
    ints = torch.frombuffer(bytearray(raw[: 2 * rows * T * 4]), dtype=torch.int32).long().reshape(2, STEPS, A, B, T)
    toks, tgts = ints[0], ints[1]
    o = 2 * rows * T * 4
    labels = torch.frombuffer(bytearray(raw[o:o + rows * 4]), dtype=torch.float32).double().reshape(STEPS, A, B)
    des = torch.frombuffer(bytearray(raw[o + rows * 4:]), dtype=torch.int32).long().reshape(STEPS, A, B)

    with torch.no_grad():
        worst = 0.0
        for s in range(STEPS):
            for k in range(A):
                r = row_logps(cfg, refp, toks[s, k], tgts[s, k])
                worst = max(worst, ((labels[s, k] - r).abs() / r.abs()).max().item())
    check(worst <= 1e-5, f"{tag}: reference log-probabilities match torch's (worst rel {worst:.2e})")

    dump = tm.st_read(os.path.join(out, "grads.safetensors"))
    loss, metrics = kto_loss(case, cfg, params(), toks[0, 0], tgts[0, 0], labels[0, 0], des[0, 0])
    loss.backward()
    cl = dump["loss"].double().item()
    check(abs(cl - loss.item()) <= 1e-4 * abs(loss.item()), f"{tag}: loss {cl:.7g} vs torch {loss.item():.7g}")
    names = sorted(k for k in dump if k != "loss")
    check(names == sorted(trained), f"{tag}: the trained tensors' gradients are dumped ({len(names)})")
    worst = 0.0
    for name, p in trained.items():
        if name not in dump:
            continue
        g_ref, g = p.grad, dump[name].double()
        scale = g_ref.abs().max().item()
        err = (g - g_ref).abs().max().item()
        worst = max(worst, err / scale if scale > 0 else err)
        if not (scale > 0 and err <= 1e-3 * scale):
            check(False, f"{tag}: gradient of {name}: max err {err:.3g} vs max |grad| {scale:.3g}")
    check(worst <= 1e-3, f"{tag}: all {len(trained)} gradients within 1e-3 of their largest value (worst {worst:.2e})")
    for p in trained.values():
        p.grad = None

    step1 = {}
    with torch.no_grad():
        for k in range(A):
            _, mk = kto_loss(case, cfg, params(), toks[0, k], tgts[0, k], labels[0, k], des[0, k])
            for nm, v in mk.items():
                step1[nm] = step1.get(nm, 0.0) + v / A  # the loop averages metrics over micro-batches
    bad = [nm for nm, v in step1.items() if nm not in c["metrics"] or abs(c["metrics"][nm] - v) > 1e-4 * (1 + abs(v))]
    check(not bad and len(step1) == len(c["metrics"]),
          f"{tag}: step-1 metrics under TRL's names agree ({', '.join(sorted(step1))}){' BAD: ' + str(bad) if bad else ''}")

    if case["loss"] == "kto":
        kl_seen.append(c["metrics"]["kl"])
    saved_clip = HP["grad_clip"]
    HP["grad_clip"] = clip
    try:
        losses, norms = adamw_steps(trained, A, lambda s, k: kto_loss(case, cfg, params(), toks[s, k], tgts[s, k],
                                                                      labels[s, k], des[s, k])[0])
    finally:
        HP["grad_clip"] = saved_clip
    with torch.no_grad():
        final = kto_loss(case, cfg, params(), toks[0, 0], tgts[0, 0], labels[0, 0], des[0, 0])[0].item()
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
    check(final < cl, f"{tag}: the steps lowered micro-batch (0, 0)'s loss ({cl:.5f} -> {final:.5f})")


def main():
    exe = sys.argv[1]
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            run_case(exe, case, tmp)
    check(any(k > 0 for k in kl_seen), f"a kto case has a positive KL estimate at step 1 ({kl_seen})")
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
