#!/usr/bin/env python3
"""PPO of the C engine (src/train/ppo.c) against plain torch, on tiny random GPT-2 (tied) and
Llama (GQA, untied) policies with a separate random reference model and a random value head on
the policy's final hidden state.

tests/ppo_steps.c writes the models, completion rows, per-row scores, the rollout's (perturbed)
log-probabilities and values, the reference's log-probabilities, the engine's KL-penalised
rewards, advantages and returns, and the loss and every gradient of one forward + PPO head +
backward. Here, in float64, with tests/reference/torch_model.py and the formulas of TRL's
PPOTrainer (logits / temperature; k1 kl = -(ref - lp), k3 = exp(ref - lp) - 1 - (ref - lp);
non-score reward -kl_coef * kl; the score added at the last completion token; GAE by TRL's
reversed loop, with values zero after the last completion token; masked_whiten with the
unbiased variance; pg = masked_mean(max(-A r, -A clamp(r, 1-e, 1+e))); vf = 0.5 *
masked_mean(max((v - R)^2, (clamp(v, old - ev, old + ev) - R)^2)); loss = pg + vf_coef vf).
Checked: the reference's log-probabilities (1e-5 relative), the per-token rewards, summed KL,
advantages and returns (1e-5 of the largest |value|), the loss (1e-4 relative), every policy
gradient and the value head's within 1e-3 of that tensor's largest |gradient|, and the head's
metrics (clip fractions, approx KL, entropy, ratio), and the adaptive KL coefficient's update
against TRL's AdaptiveKLController; then 10 AdamW steps on that micro-batch (the value head
with its own optimizer, stepped before the next step reads a value): per-step losses and policy
gradient norms, the final value head and loss, within 1e-3.
With LoRA (the cases named "lora"): the policy is the base plus ppo_steps's adapter (B random)
through lora_torch.py's layer, the reference is the base with the adapter off, and the trained
tensors whose gradients and AdamW steps are checked are the adapter's and the value head's.

Usage: ppo_torch.py PPO_STEPS_EXE
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
from test_train_torch import HP, STEPS, decays, schedule  # noqa: E402

GPT2 = ["--family", "gpt2", "--layers", "2", "--dim", "32", "--heads", "4", "--ffn", "128", "--vocab", "61",
        "--context", "32"]
LLAMA = ["--family", "llama", "--layers", "2", "--dim", "32", "--heads", "4", "--kv-heads", "2", "--ffn", "48",
         "--vocab", "67", "--context", "32", "--untied"]
CASES = [
    dict(name="gpt2 k1 whiten", args=GPT2, est="k1", kl_coef=0.05, gamma=1.0, lam=0.95, clip=0.2, clipv=0.2, vf=0.1,
         temp=0.7, whiten=True, B=4, T=12),
    dict(name="llama gqa k3 gamma 0.9", args=LLAMA, est="k3", kl_coef=0.2, gamma=0.9, lam=0.8, clip=0.1, clipv=0.1,
         vf=0.5, temp=1.0, whiten=True, B=4, T=12),
    dict(name="gpt2 k3 no whitening", args=GPT2, est="k3", kl_coef=0.1, gamma=1.0, lam=1.0, clip=0.2, clipv=0.05,
         vf=0.1, temp=0.9, whiten=False, B=6, T=10),
    dict(name="llama gqa k1 tight clips", args=LLAMA, est="k1", kl_coef=0.05, gamma=0.99, lam=0.95, clip=0.05,
         clipv=0.05, vf=1.0, temp=0.7, whiten=True, B=5, T=11),
    dict(name="gpt2 lora c_attn,c_fc k1", args=GPT2, est="k1", kl_coef=0.1, gamma=1.0, lam=0.95, clip=0.2, clipv=0.2,
         vf=0.5, temp=0.7, whiten=True, B=4, T=12, lora=dict(r=4, alpha=8, targets=["c_attn", "c_fc"])),
    dict(name="llama gqa lora all-linear k3", args=LLAMA, est="k3", kl_coef=0.2, gamma=0.9, lam=0.8, clip=0.1,
         clipv=0.1, vf=0.5, temp=1.0, whiten=True, B=4, T=12,
         lora=dict(r=2, alpha=6, targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])),
]

failures = []


def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def logps(cfg, params, tokens, targets, temp):
    logits, hidden = tm.forward(cfg, params, tokens)
    lpa = torch.log_softmax(logits.double() / temp, -1)
    lp = lpa.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return lp, lpa, hidden.double()


def advantages(case, old_lp, ref_lp, old_v, scores, mask):
    """TRL's PPOTrainer rollout arithmetic."""
    logr = ref_lp - old_lp
    kl = -logr if case["est"] == "k1" else (logr.exp() - 1) - logr
    kl = kl * mask
    non_score = -case["kl_coef"] * kl
    rewards = non_score.clone()
    T = mask.shape[1]
    idx = torch.arange(T).expand_as(mask)
    last = torch.where(mask > 0, idx, torch.full_like(idx, -1)).max(1).values
    rewards[torch.arange(mask.shape[0]), last] += scores
    values = old_v * mask
    lastgaelam = torch.zeros(mask.shape[0], dtype=torch.float64)
    adv_rev = []
    for t in reversed(range(T)):
        nextvalues = values[:, t + 1] if t < T - 1 else 0.0
        delta = rewards[:, t] + case["gamma"] * nextvalues - values[:, t]
        lastgaelam = delta + case["gamma"] * case["lam"] * lastgaelam
        adv_rev.append(lastgaelam)
    adv = torch.stack(adv_rev[::-1], 1)
    returns = adv + values
    if case["whiten"]:
        n = mask.sum()
        mean = (adv * mask).sum() / n
        var = (((adv - mean) ** 2) * mask).sum() / n * (n / (n - 1))
        adv = (adv - mean) * torch.rsqrt(var + 1e-8)
    return rewards * mask, adv * mask, returns * mask, kl.sum(1)


def ppo_loss(case, lp, lpa, values, old_lp, old_v, adv, returns, mask):
    n = mask.sum()
    mm = lambda x: (x * mask).sum() / n  # noqa: E731
    vclip = torch.clamp(values, old_v - case["clipv"], old_v + case["clipv"])
    vf1 = (values - returns) ** 2
    vf2 = (vclip - returns) ** 2
    vf = 0.5 * mm(torch.max(vf1, vf2))
    diff = lp - old_lp
    ratio = torch.exp(diff)
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1 - case["clip"], 1 + case["clip"])
    pg = mm(torch.max(pg1, pg2))
    ent = -(lpa.exp() * lpa).sum(-1)
    metrics = {"loss/policy_avg": pg.item(), "loss/value_avg": vf.item(),
               "policy/clipfrac_avg": mm((pg2 > pg1).double()).item(),
               "val/clipfrac_avg": mm((vf2 > vf1).double()).item(),
               "policy/approxkl_avg": mm(0.5 * diff.detach() ** 2).item(),
               "policy/entropy_avg": mm(ent.detach()).item(), "val/ratio": mm(ratio.detach()).item()}
    return pg + case["vf"] * vf, metrics


class AdaptiveKLController:
    """TRL's (trl.trainer.utils), as its old PPOTrainer used it."""

    def __init__(self, init_kl_coef, target, horizon):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current, n_steps):
        proportional_error = min(max(current / self.target - 1, -0.2), 0.2)
        self.value *= 1 + proportional_error * n_steps / self.horizon


def run_case(exe, case, tmp):
    tag = case["name"]
    out = os.path.join(tmp, tag.replace(" ", "_"))
    os.makedirs(out, exist_ok=True)
    cmd = [exe, *case["args"], "--batch", str(case["B"]), "--seq", str(case["T"]), "--kl-estimator", case["est"],
           "--kl-coef", str(case["kl_coef"]), "--gamma", str(case["gamma"]), "--lam", str(case["lam"]),
           "--cliprange", str(case["clip"]), "--cliprange-value", str(case["clipv"]), "--vf-coef", str(case["vf"]),
           "--temperature", str(case["temp"]), "--seed", "11", "--out", out, "--steps", str(STEPS),
           "--lr", str(HP["lr"]), "--min-lr", str(HP["min_lr"]), "--warmup", str(HP["warmup"]),
           "--weight-decay", str(HP["weight_decay"]), "--grad-clip", str(HP["grad_clip"])]
    if not case["whiten"]:
        cmd.append("--no-whiten")
    lora = case.get("lora")
    if lora:
        cmd += ["--lora-rank", str(lora["r"]), "--lora-alpha", str(lora["alpha"]), "--lora-targets", ",".join(lora["targets"])]
    c = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)
    cfg = tm.config_from_hf(json.load(open(os.path.join(out, "policy", "config.json"))))
    base = {k: v.double() for k, v in tm.st_read(os.path.join(out, "policy", "model.safetensors")).items()}
    if lora:
        # the trained tensors: the adapter's; the policy is the base plus the adapter, the reference the base
        params = {k: v.double().requires_grad_() for k, v in
                  tm.st_read(os.path.join(out, "adapter", "adapter_model.safetensors")).items()}

        def policy():
            return lora_params(cfg, base, params, lora["alpha"] / lora["r"])
        refp = base
    else:
        params = {k: v.clone().requires_grad_() for k, v in base.items()}

        def policy():
            return params
        refp = {k: v.double() for k, v in tm.st_read(os.path.join(out, "ref", "model.safetensors")).items()}
    ro = {k: v.double() for k, v in tm.st_read(os.path.join(out, "rollout.safetensors")).items()}
    toks, tgts = ro["tokens"].long(), ro["targets"].long()
    mask = (tgts >= 0).double()
    vw = ro["v_head.weight"].clone().requires_grad_()
    vb = ro["v_head.bias"].clone().requires_grad_()

    with torch.no_grad():
        r, _, _ = logps(cfg, refp, toks, tgts, case["temp"])
        worst = ((ro["ref_lp"] - r).abs() * mask).max().item() / (r * mask).abs().max().item()
    check(worst <= 1e-5, f"{tag}: reference log-probabilities at temperature {case['temp']} match (worst rel {worst:.2e})")

    rew, adv, ret, kls = advantages(case, ro["old_lp"], ro["ref_lp"], ro["old_values"], ro["scores"], mask)
    for name, mine, theirs in [("rewards (KL penalty + score)", ro["rewards"], rew), ("advantages (GAE)", ro["adv"], adv),
                               ("returns", ro["returns"], ret), ("summed KL per row", ro["kl_sum"], kls)]:
        scale = theirs.abs().max().item()
        err = (mine - theirs).abs().max().item()
        check(err <= 1e-5 * scale + 1e-7, f"{tag}: {name} agree (max err {err:.2e}, max |value| {scale:.3g})")

    lp, lpa, hidden = logps(cfg, policy(), toks, tgts, case["temp"])
    values = hidden @ vw + vb
    loss, metrics = ppo_loss(case, lp, lpa, values, ro["old_lp"], ro["old_values"], ro["adv"], ro["returns"], mask)
    loss.backward()
    dump = tm.st_read(os.path.join(out, "grads.safetensors"))
    cl = dump["loss"].double().item()
    check(abs(cl - loss.item()) <= 1e-4 * abs(loss.item()) + 1e-7, f"{tag}: loss {cl:.7g} vs torch {loss.item():.7g}")
    grads = dict((n, p.grad) for n, p in params.items())
    grads["v_head.weight"], grads["v_head.bias"] = vw.grad, vb.grad
    worst = 0.0
    for name, g_ref in grads.items():
        g = dump[f"grad.{name}"].double().reshape(g_ref.shape)
        scale = g_ref.abs().max().item()
        err = (g - g_ref).abs().max().item()
        worst = max(worst, err / scale if scale > 0 else err)
        if not err <= 1e-3 * scale + 1e-12:
            check(False, f"{tag}: gradient of {name}: max err {err:.3g} vs max |grad| {scale:.3g}")
    check(worst <= 1e-3, f"{tag}: all {len(grads)} gradients ({'adapter' if lora else 'policy'} and value head) within "
          f"1e-3 of their largest value (worst {worst:.2e})")
    check(sorted(k for k in dump if k != "loss") == sorted(f"grad.{n}" for n in grads),
          f"{tag}: exactly the trained tensors' gradients are dumped ({len(grads)})")
    bad = [n for n, v in metrics.items() if n not in c["metrics"] or abs(c["metrics"][n] - v) > 1e-4 * (1 + abs(v))]
    check(not bad, f"{tag}: metrics agree ({', '.join(f'{n} {v:.4f}' for n, v in sorted(metrics.items()))})"
          f"{' BAD: ' + str(bad) + ' ' + str(c['metrics']) if bad else ''}")
    # STEPS optimizer steps on the same micro-batch: the policy's AdamW (the engine's groups,
    # schedule, clipping) and the value head's own (weight decayed, bias not, clipped alone)
    for p in list(params.values()) + [vw, vb]:
        p.grad = None
    opt_p = torch.optim.AdamW([{"params": [p for n, p in params.items() if decays(n, p)], "weight_decay": HP["weight_decay"]},
                               {"params": [p for n, p in params.items() if not decays(n, p)], "weight_decay": 0.0}],
                              lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"])
    opt_v = torch.optim.AdamW([{"params": [vw], "weight_decay": HP["weight_decay"]}, {"params": [vb], "weight_decay": 0.0}],
                              lr=HP["lr"], betas=(HP["beta1"], HP["beta2"]), eps=HP["eps"])

    def step_loss():
        lp_, lpa_, hid_ = logps(cfg, policy(), toks, tgts, case["temp"])
        return ppo_loss(case, lp_, lpa_, hid_ @ vw + vb, ro["old_lp"], ro["old_values"], ro["adv"], ro["returns"], mask)[0]

    losses, norms = [], []
    for s in range(STEPS):
        opt_p.zero_grad()
        opt_v.zero_grad()
        loss_s = step_loss()
        loss_s.backward()
        losses.append(loss_s.item())
        norms.append(torch.nn.utils.clip_grad_norm_(list(params.values()), HP["grad_clip"]).item())
        torch.nn.utils.clip_grad_norm_([vw, vb], HP["grad_clip"])
        for o in (opt_p, opt_v):
            for g in o.param_groups:
                g["lr"] = schedule(s)
            o.step()
    with torch.no_grad():
        final = step_loss().item()
    bad = [s for s in range(STEPS) if not (abs(c["losses"][s] - losses[s]) <= 1e-3 * abs(losses[s]) + 1e-6
                                           and abs(c["grad_norms"][s] - norms[s]) <= 1e-3 * abs(norms[s]) + 1e-7)]
    for s in bad:
        print(f"  step {s + 1}: loss {c['losses'][s]:.7g} vs {losses[s]:.7g}, grad norm {c['grad_norms'][s]:.7g} vs {norms[s]:.7g}")
    check(not bad, f"{tag}: {STEPS} AdamW steps (policy and value head): losses {losses[0]:.4f} -> {losses[-1]:.4f} and "
          f"gradient norms agree with torch.optim.AdamW to 1e-3")
    vt = torch.cat([vw.detach(), vb.detach()])
    verr = (torch.tensor(c["v_final"], dtype=torch.float64) - vt).abs().max().item()
    check(verr <= 1e-3 * vt.abs().max().item() and abs(c["final_loss"] - final) <= 1e-3 * abs(final) + 1e-6,
          f"{tag}: after {STEPS} steps the value head (max err {verr:.2e}) and the loss ({c['final_loss']:.6g} vs "
          f"{final:.6g}) agree")
    want = []
    for kl in (0.5, 5.5, 6.0, 7.0, 30.0):
        ctl = AdaptiveKLController(0.2, 6.0, 10000)
        ctl.update(kl, 64)
        want.append(ctl.value)
    check(all(abs(a - b) <= 1e-12 for a, b in zip(c["adaptive_kl"], want)),
          f"{tag}: adaptive KL coefficient as TRL's AdaptiveKLController ({', '.join(f'{v:.6f}' for v in want)})")
    check(metrics["policy/clipfrac_avg"] > 0 and metrics["val/clipfrac_avg"] > 0,
          f"{tag}: both clippings engage on this rollout (policy {metrics['policy/clipfrac_avg']:.2f}, value "
          f"{metrics['val/clipfrac_avg']:.2f})")


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
