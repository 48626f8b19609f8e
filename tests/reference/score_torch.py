#!/usr/bin/env python3
"""The score heads (classification cross-entropy, Bradley-Terry with margin and centring) of the C
engine against plain torch, on tiny random GPT-2 (tied) and Llama (GQA, untied) classifiers.

tests/score_steps.c makes the classifier (score.weight (K, C) on a random LM body), writes it as
a Hugging Face *ForSequenceClassification directory, the variable-length padded batches, the
loss / scores / every gradient of the first micro-batch, and runs 10 AdamW steps through
train_loop_run. Here the same model is read from the directory by HF names with the reference
of tests/reference/torch_model.py in float64, the score read as transformers does (the last
token that is not pad_token_id), and the losses are TRL's / torch's:
  classification: F.cross_entropy(scores, labels)
  pairs:          -logsigmoid(r_c - r_r - margin).mean() + coef * ((r_c + r_r) ** 2).mean()
Checked: the config (architectures, num_labels, id2label/label2id, pad_token_id); loss 1e-4
relative; scores 1e-4 of their largest value; every parameter's gradient within 1e-3 of that
tensor's largest |gradient| (the engine's gradient tolerance); 10 optimizer steps (losses,
gradient norms before clipping, learning rates, loss after the last update) within 1e-3
relative of torch.optim.AdamW with the same decay groups, clipping and accumulation; and the
trained model the engine saved gives, read by HF names, the rewards the engine printed (1e-4).

With LoRA (the "lora" cases: score_steps --lora-rank R, PEFT's modules_to_save = ["score"]) the
body is the frozen base plus the adapter in PEFT's unmerged form (lora_torch.py's reference layer,
scaling alpha / r), the trainable tensors are every lora_A / lora_B and score.weight, read from
the adapter directory the engine saved (PEFT's names, base_model.model.score.weight included): the
same loss, every trainable gradient, the 10 AdamW steps over exactly those tensors, and the trained
adapter directory applied to the base in torch gives the scores of the engine's merged model.

Usage: score_torch.py SCORE_STEPS_EXE
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_model as tm  # noqa: E402
from test_train_torch import HP, STEPS, adamw_steps, schedule  # noqa: E402  (the same optimizer settings)
from lora_torch import lora_params  # noqa: E402  (PEFT's unmerged LoRA layer)

GPT2 = ["--family", "gpt2", "--layers", "2", "--dim", "32", "--heads", "4", "--ffn", "128", "--vocab", "61",
        "--context", "32"]
LLAMA = ["--family", "llama", "--layers", "2", "--dim", "32", "--heads", "4", "--kv-heads", "2", "--ffn", "48",
         "--vocab", "67", "--context", "32", "--untied"]
CASES = [
    dict(name="gpt2 classify 3 labels", args=GPT2 + ["--objective", "classify", "--labels", "3"], B=4, T=12, A=1),
    dict(name="llama gqa classify 4 labels accum 2", args=LLAMA + ["--objective", "classify", "--labels", "4"],
         B=3, T=12, A=2),
    dict(name="gpt2 pairs margin+centre", args=GPT2 + ["--objective", "pairs", "--margins", "--center", "0.01"],
         B=4, T=12, A=1, center=0.01),
    dict(name="llama gqa pairs centre accum 2", args=LLAMA + ["--objective", "pairs", "--center", "0.05"],
         B=4, T=10, A=2, center=0.05),
    dict(name="gpt2 lora classify 3 labels", args=GPT2 + ["--objective", "classify", "--labels", "3"], B=4, T=12, A=1,
         lora=dict(rank=4, alpha=8, targets="c_attn,c_proj,c_fc")),
    dict(name="gpt2 lora pairs margin+centre", args=GPT2 + ["--objective", "pairs", "--margins", "--center", "0.01"],
         B=4, T=12, A=1, center=0.01, lora=dict(rank=2, alpha=5, targets="c_attn")),
    dict(name="llama gqa lora classify accum 2", args=LLAMA + ["--objective", "classify", "--labels", "4"], B=3,
         T=12, A=2, lora=dict(rank=3, alpha=6, targets="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")),
    dict(name="llama gqa lora pairs centre", args=LLAMA + ["--objective", "pairs", "--center", "0.05"], B=4, T=10,
         A=1, center=0.05, lora=dict(rank=4, alpha=16, targets="q_proj,v_proj,down_proj")),
]

failures = []


def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what)
    if not ok:
        failures.append(what)


def scores_of(cfg, params, tokens, pad):
    """transformers' *ForSequenceClassification: score(hidden) at the last token != pad."""
    body = dict(cfg, tied=True)  # the LM head is not used (and a classifier has none)
    _, hidden = tm.forward(body, params, tokens)
    T = tokens.shape[1]
    last = ((tokens != pad).long() * torch.arange(T)).argmax(-1)
    h = hidden[torch.arange(tokens.shape[0]), last]
    return h @ params["score.weight"].T


def loss_of(scores, labels, pairs, center):
    if not pairs:
        return F.cross_entropy(scores, labels.long())
    rc, rr, margin = scores[0::2, 0], scores[1::2, 0], labels[0::2]
    return -F.logsigmoid(rc - rr - margin).mean() + center * ((rc + rr) ** 2).mean()


def read_adapter(d):
    """PEFT adapter directory -> ({lora tensor: double}, score.weight, scaling)."""
    conf = json.load(open(os.path.join(d, "adapter_config.json")))
    t = {k: v.double() for k, v in tm.st_read(os.path.join(d, "adapter_model.safetensors")).items()}
    score = t.pop("base_model.model.score.weight")
    return t, score, conf["lora_alpha"] / conf["r"], conf


def run_lora_case(exe, case, tmp, c, cfg, base, toks, labels, pad, pairs, center):
    tag, A = case["name"], case["A"]
    lo = case["lora"]
    adapter, score, scaling, conf = read_adapter(os.path.join(tmp, "init_adapter"))
    check(conf["task_type"] == "SEQ_CLS" and conf["modules_to_save"] == ["score"] and conf["r"] == lo["rank"]
          and conf["lora_alpha"] == lo["alpha"] and sorted(conf["target_modules"]) == sorted(lo["targets"].split(",")),
          f"{tag}: adapter_config.json: SEQ_CLS, modules_to_save [score], r {conf['r']}, alpha {conf['lora_alpha']}")
    check(torch.equal(score, base["score.weight"]), f"{tag}: the adapter's score.weight is the classifier's")
    train = {k: v.clone().requires_grad_() for k, v in adapter.items()}
    train["score.weight"] = score.clone().requires_grad_()

    def full():
        p = lora_params(cfg, base, {k: v for k, v in train.items() if k != "score.weight"}, scaling)
        p["score.weight"] = train["score.weight"]
        return p

    dump = tm.st_read(os.path.join(tmp, "grads.safetensors"))
    scores = scores_of(cfg, full(), toks[0, 0], pad)
    loss = loss_of(scores, labels[0, 0], pairs, center)
    loss.backward()
    cl = dump["loss"].double().item()
    check(abs(cl - loss.item()) <= 1e-4 * abs(loss.item()), f"{tag}: loss {cl:.7g} vs torch {loss.item():.7g}")
    serr = (dump["scores"].double() - scores.detach()).abs().max().item()
    check(serr <= 1e-4 * scores.detach().abs().max().item(), f"{tag}: scores max err {serr:.3g}")
    got_names = sorted(k[5:] for k in dump if k.startswith("grad."))
    check(got_names == sorted(train), f"{tag}: the trainable tensors are the adapter's {len(adapter)} and score.weight "
          f"(engine dumped {len(got_names)})")
    worst = 0.0
    for name, p in train.items():
        g_ref, g = p.grad, dump[f"grad.{name}"].double()
        scale = g_ref.abs().max().item()
        err = (g - g_ref).abs().max().item()
        worst = max(worst, err / scale if scale > 0 else err)
        if not (scale > 0 and err <= 1e-3 * scale + 1e-12):
            check(False, f"{tag}: gradient of {name}: max err {err:.3g} vs max |grad| {scale:.3g}")
    check(worst <= 1e-3, f"{tag}: all {len(train)} trainable gradients within 1e-3 of their largest value "
          f"(worst {worst:.2e})")
    for p in train.values():
        p.grad = None
    losses, norms = adamw_steps(
        train, A, lambda s, k: loss_of(scores_of(cfg, full(), toks[s, k], pad), labels[s, k], pairs, center))
    bad = [s for s in range(STEPS) if not (abs(c["losses"][s] - losses[s]) <= 1e-3 * abs(losses[s])
                                           and abs(c["grad_norms"][s] - norms[s]) <= 1e-3 * abs(norms[s]))]
    for s in bad:
        print(f"  step {s + 1}: loss {c['losses'][s]:.7g} vs {losses[s]:.7g}, grad norm {c['grad_norms'][s]:.7g} "
              f"vs {norms[s]:.7g}")
    check(not bad, f"{tag}: {STEPS} AdamW steps over adapter + score: losses {losses[0]:.4f} -> {losses[-1]:.4f} "
          f"and gradient norms agree with torch.optim.AdamW to 1e-3")
    with torch.no_grad():
        final = loss_of(scores_of(cfg, full(), toks[0, 0], pad), labels[0, 0], pairs, center).item()
    check(abs(c["final_loss"] - final) <= 1e-3 * abs(final),
          f"{tag}: loss after step {STEPS} (engine: merged model) {c['final_loss']:.7g} vs torch {final:.7g}")
    # the saved trained adapter, applied to the base in torch, gives the engine's merged scores
    a2, s2, sc2, _ = read_adapter(os.path.join(tmp, "final_adapter"))
    with torch.no_grad():
        p = lora_params(cfg, base, a2, sc2)
        p["score.weight"] = s2
        ref = scores_of(cfg, p, toks[0, 0], pad).reshape(-1)
    got = torch.tensor(c["final_scores"], dtype=torch.float64)
    err = (got - ref).abs().max().item()
    check(err <= 1e-4 * ref.abs().max().item(), f"{tag}: the saved adapter + score on the base in torch match the "
          f"engine's merged model (max err {err:.3g} vs max |score| {ref.abs().max().item():.3g})")


def run_case(exe, case, tmp):
    tag = case["name"]
    out = os.path.join(tmp, tag.replace(" ", "_"))
    B, T, A = case["B"], case["T"], case["A"]
    pairs = "pairs" in case["args"]
    center = case.get("center", 0.0)
    cmd = [exe, *case["args"], "--batch", str(B), "--seq", str(T), "--accum", str(A), "--steps", str(STEPS),
           "--lr", str(HP["lr"]), "--min-lr", str(HP["min_lr"]), "--warmup", str(HP["warmup"]),
           "--weight-decay", str(HP["weight_decay"]), "--grad-clip", str(HP["grad_clip"]), "--seed", "5",
           "--out", out]
    if "lora" in case:
        lo = case["lora"]
        cmd += ["--lora-rank", str(lo["rank"]), "--lora-alpha", str(lo["alpha"]), "--lora-targets", lo["targets"]]
    c = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)

    hf = json.load(open(os.path.join(out, "init", "config.json")))
    K = hf.get("num_labels")
    check(hf["architectures"][0] in ("GPT2ForSequenceClassification", "LlamaForSequenceClassification")
          and K == len(hf["id2label"]) and all(hf["label2id"][v] == int(k) for k, v in hf["id2label"].items())
          and hf["pad_token_id"] == 0, f"{tag}: config.json is a sequence classifier ({hf['architectures'][0]}, "
          f"num_labels {K}, pad_token_id {hf.get('pad_token_id')})")
    cfg = tm.config_from_hf(hf)
    pad = hf["pad_token_id"]
    params = {k: v.double().requires_grad_() for k, v in tm.st_read(os.path.join(out, "init", "model.safetensors")).items()}
    check("lm_head.weight" not in params and tuple(params["score.weight"].shape) == (K, cfg["dim"]),
          f"{tag}: score.weight ({K}, {cfg['dim']}), no lm_head")
    raw = open(os.path.join(out, "batches.bin"), "rb").read()
    rows = STEPS * A * B
    toks = torch.frombuffer(bytearray(raw[: rows * T * 4]), dtype=torch.int32).long().reshape(STEPS, A, B, T)
    labels = torch.frombuffer(bytearray(raw[rows * T * 4 + rows * 4:]), dtype=torch.float32).double()
    labels = labels.reshape(STEPS, A, B)

    if "lora" in case:
        base = {k: v.detach() for k, v in params.items()}
        run_lora_case(exe, case, out, c, cfg, base, toks, labels, pad, pairs, center)
        return

    # gradients of micro-batch (0, 0)
    dump = tm.st_read(os.path.join(out, "grads.safetensors"))
    scores = scores_of(cfg, params, toks[0, 0], pad)
    loss = loss_of(scores, labels[0, 0], pairs, center)
    loss.backward()
    cl = dump["loss"].double().item()
    check(abs(cl - loss.item()) <= 1e-4 * abs(loss.item()), f"{tag}: loss {cl:.7g} vs torch {loss.item():.7g}")
    serr = (dump["scores"].double() - scores.detach()).abs().max().item()
    sscale = scores.detach().abs().max().item()
    check(serr <= 1e-4 * sscale, f"{tag}: scores max err {serr:.3g} vs max |score| {sscale:.3g}")
    worst = 0.0
    for name, p in params.items():
        g_ref = p.grad
        g = dump[f"grad.{name}"].double()
        scale = g_ref.abs().max().item()
        err = (g - g_ref).abs().max().item()
        worst = max(worst, err / scale if scale > 0 else err)
        if not err <= 1e-3 * scale + 1e-12:
            check(False, f"{tag}: gradient of {name}: max err {err:.3g} vs max |grad| {scale:.3g}")
    check(worst <= 1e-3, f"{tag}: all {len(params)} gradients within 1e-3 of their largest value (worst {worst:.2e})")

    # 10 AdamW steps
    for p in params.values():
        p.grad = None
    losses, norms = adamw_steps(
        params, A, lambda s, k: loss_of(scores_of(cfg, params, toks[s, k], pad), labels[s, k], pairs, center))
    with torch.no_grad():
        final = loss_of(scores_of(cfg, params, toks[0, 0], pad), labels[0, 0], pairs, center).item()
    bad = [s for s in range(STEPS) if not (abs(c["losses"][s] - losses[s]) <= 1e-3 * abs(losses[s])
                                           and abs(c["grad_norms"][s] - norms[s]) <= 1e-3 * abs(norms[s])
                                           and abs(c["lrs"][s] - schedule(s)) <= 1e-6)]
    for s in bad:
        print(f"  step {s + 1}: loss {c['losses'][s]:.7g} vs {losses[s]:.7g}, grad norm {c['grad_norms'][s]:.7g} "
              f"vs {norms[s]:.7g}, lr {c['lrs'][s]:.7g} vs {schedule(s):.7g}")
    check(not bad, f"{tag}: {STEPS} AdamW steps: losses {losses[0]:.4f} -> {losses[-1]:.4f} and gradient norms agree "
          f"with torch.optim.AdamW to 1e-3")
    check(abs(c["final_loss"] - final) <= 1e-3 * abs(final),
          f"{tag}: loss after step {STEPS}: engine {c['final_loss']:.7g} vs torch {final:.7g}")
    print(f"  {tag}: clipping engaged in {sum(n > HP['grad_clip'] for n in norms)}/{STEPS} steps")

    # the saved trained model, read by HF names, gives the engine's rewards
    saved = {k: v.double() for k, v in tm.st_read(os.path.join(out, "final", "model.safetensors")).items()}
    hf2 = json.load(open(os.path.join(out, "final", "config.json")))
    with torch.no_grad():
        ref = scores_of(tm.config_from_hf(hf2), saved, toks[0, 0], hf2["pad_token_id"]).reshape(-1)
    got = torch.tensor(c["final_scores"], dtype=torch.float64)
    err = (got - ref).abs().max().item()
    check(err <= 1e-4 * ref.abs().max().item(), f"{tag}: saved model's scores in torch match the engine's "
          f"(max err {err:.3g} vs max |score| {ref.abs().max().item():.3g})")


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
