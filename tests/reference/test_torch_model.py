"""test_torch_model.py - the C engine's forward, loss and gradients against torch_model.py.

Usage: test_torch_model.py MODEL_DUMP_EXE [RLHF_EXE]

1. Engine path: for random small configs of both families (GQA, tied and untied heads, both
   rope layouts, masked targets and weights) model_dump builds a random model, runs
   forward / xent / backward and writes parameters, logits, loss and gradients; the reference
   recomputes all of it in float64 from the same parameters.
2. User-facing path (when RLHF_EXE implements them): `rlhf model new` -> `rlhf loss --grads` and
   `rlhf logits --json`, checked the same way from the model directory the CLI wrote.

Tolerances (the issue's): logits and loss within 1e-4 relative (max |error| <= 1e-4 x max |ref|
for logits), every parameter's gradient within 1e-3 x that tensor's max |grad|.
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


def compare_grads(tag, cfg, params, got):
    for name in tm.param_names(cfg):
        g_ref = params[name].grad
        if g_ref is None:
            g_ref = torch.zeros_like(params[name])
        g = got[name].double()
        scale = g_ref.abs().max().item()
        err = (g - g_ref).abs().max().item()
        check(tuple(g.shape) == tuple(g_ref.shape) and err <= 1e-3 * scale + 1e-12,
              f"{tag}: gradient of {name}: max err {err:.3g} vs max |grad| {scale:.3g}")


def run_dump(exe, case, tmp):
    cfg = case["cfg"]
    B, T = case["B"], case["T"]
    rng = random.Random(case["seed"])
    toks = [rng.randrange(cfg["vocab_size"]) for _ in range(B * T)]
    tgts = [toks[i + 1] if (i + 1) % T else -1 for i in range(B * T)]
    tgts[rng.randrange(B * T)] = -1  # one more masked position
    weights = [round(rng.uniform(0.2, 2.0), 3) for _ in range(B * T)] if case.get("weighted") else None
    args = [exe, f"family={cfg['family']}", f"layers={cfg['n_layers']}", f"dim={cfg['dim']}",
            f"heads={cfg['n_heads']}", f"kv_heads={cfg['n_kv_heads']}", f"ffn={cfg['ffn_dim']}",
            f"vocab={cfg['vocab_size']}", f"context={cfg['context']}", f"tied={int(cfg['tied'])}",
            f"rope={cfg['rope_layout']}", f"theta={cfg['rope_theta']}", f"eps={cfg['norm_eps']}",
            f"seed={case['seed']}", f"batch={B}", "tokens=" + ",".join(map(str, toks)),
            "targets=" + ",".join(map(str, tgts)), f"out={tmp}"]
    if weights:
        args.append("weights=" + ",".join(map(str, weights)))
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        check(False, f"{case['name']}: model_dump failed: {r.stderr.strip()}")
        return
    params = {k: v.double().requires_grad_() for k, v in tm.st_read(os.path.join(tmp, "params.safetensors")).items()}
    grads = tm.st_read(os.path.join(tmp, "grads.safetensors"))
    outs = tm.st_read(os.path.join(tmp, "outputs.safetensors"))
    check(sorted(params) == sorted(tm.param_names(cfg)), f"{case['name']}: tensor names are the Hugging Face ones")
    tokens = torch.tensor(toks).reshape(B, T)
    targets = torch.tensor(tgts).reshape(B, T)
    w = torch.tensor(weights, dtype=torch.float64).reshape(B, T) if weights else None
    logits, hidden = tm.forward(cfg, params, tokens)
    loss, losses = tm.xent(logits, targets, w)
    loss.backward()
    tag = case["name"]
    lerr = (outs["logits"].double() - logits.detach()).abs().max().item()
    lscale = logits.detach().abs().max().item()
    check(lerr <= 1e-4 * lscale, f"{tag}: logits max err {lerr:.3g} vs max |logit| {lscale:.3g}")
    herr = (outs["hidden"].double() - hidden.detach()).abs().max().item()
    check(herr <= 1e-4 * hidden.detach().abs().max().item(), f"{tag}: final hidden state max err {herr:.3g}")
    cl = outs["loss"].double().item()
    check(abs(cl - loss.item()) <= 1e-4 * abs(loss.item()), f"{tag}: loss {cl:.8f} vs reference {loss.item():.8f}")
    perr = (outs["losses"].double() - losses.detach()).abs().max().item()
    check(perr <= 1e-4 * losses.detach().abs().max().item(), f"{tag}: per-position losses max err {perr:.3g}")
    compare_grads(tag, cfg, params, grads)
    print(f"ok {tag}: loss {cl:.6f} (ref {loss.item():.6f}), logits err {lerr:.2g}")


def cli_implemented(rlhf):
    """True once `rlhf model new` and `rlhf loss` are real commands (not placeholders)."""
    if not rlhf or not os.path.exists(rlhf):
        return False
    for cmd in (["model", "new", "--help"], ["loss", "--help"], ["logits", "--help"]):
        r = subprocess.run([rlhf] + cmd, capture_output=True, text=True)
        text = (r.stdout + r.stderr).lower()
        if r.returncode != 0 or "not built" in text or "not implemented" in text or "placeholder" in text:
            return False
    return True


def run_cli(rlhf, case, tmp):
    """model new -> loss --grads and logits --json, checked against the reference."""
    c = case["cfg"]
    d = os.path.join(tmp, "model-%d" % case["seed"])
    args = [rlhf, "model", "new", "--family", c["family"], "--layers", str(c["n_layers"]), "--dim", str(c["dim"]),
            "--heads", str(c["n_heads"]), "--ffn", str(c["ffn_dim"]), "--vocab", str(c["vocab_size"]),
            "--context", str(c["context"]), "--tied" if c["tied"] else "--untied", "--seed", str(case["seed"]),
            "--out", d]
    if c["family"] == "llama":
        args += ["--kv-heads", str(c["n_kv_heads"])]
    r = subprocess.run(args, capture_output=True, text=True)
    tag = "cli " + case["name"]
    if r.returncode != 0:
        check(False, f"{tag}: rlhf model new failed: {r.stderr.strip()}")
        return
    with open(os.path.join(d, "config.json")) as f:
        cfg = tm.config_from_hf(json.load(f))
    params = {k: v.double().requires_grad_() for k, v in tm.st_read(os.path.join(d, "model.safetensors")).items()}
    if cfg["tied"]:
        params.pop("lm_head.weight", None)  # a tied checkpoint may or may not carry the alias
    rng = random.Random(case["seed"] + 1)
    T = case["T"]
    toks = [rng.randrange(cfg["vocab_size"]) for _ in range(T)]
    gpath = os.path.join(tmp, "grads.safetensors")
    r = subprocess.run([rlhf, "loss", "--model", d, "--tokens", " ".join(map(str, toks)), "--grads", gpath],
                       capture_output=True, text=True)
    if r.returncode != 0:
        check(False, f"{tag}: rlhf loss failed: {r.stderr.strip()}")
        return
    nums = [float(w) for w in r.stdout.replace("=", " ").replace(":", " ").split() if _is_float(w)]
    tokens = torch.tensor(toks).reshape(1, T)
    targets = torch.tensor(toks[1:] + [-1]).reshape(1, T)
    logits, _ = tm.forward(cfg, params, tokens)
    loss, _ = tm.xent(logits, targets)
    loss.backward()
    check(any(abs(x - loss.item()) <= 1e-4 * abs(loss.item()) for x in nums),
          f"{tag}: `rlhf loss` prints {r.stdout.strip()!r}, reference {loss.item():.6f}")
    compare_grads(tag, cfg, params, tm.st_read(gpath))
    r = subprocess.run([rlhf, "logits", "--model", d, "--tokens", " ".join(map(str, toks)), "--json"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        check(False, f"{tag}: rlhf logits failed: {r.stderr.strip()}")
        return
    got = _logits_from_json(json.loads(r.stdout))
    ref = logits.detach()[0]
    ok = got is not None and tuple(got.shape) == tuple(ref.shape)
    err = (got - ref).abs().max().item() if ok else float("inf")
    check(ok and err <= 1e-4 * ref.abs().max().item(), f"{tag}: `rlhf logits --json` max err {err:.3g}")
    print(f"ok {tag}: loss {loss.item():.6f}, logits err {err:.2g}")


def _is_float(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def _logits_from_json(j):
    """Accepts a (T, V) list of lists, or an object holding one under "logits" (possibly as a
    list of per-position objects with "logits")."""
    if isinstance(j, dict):
        j = j.get("logits", j.get("positions"))
    if isinstance(j, list) and j and isinstance(j[0], dict):
        j = [row.get("logits") for row in j]
    try:
        return torch.tensor(j, dtype=torch.float64)
    except (TypeError, ValueError):
        return None


def random_cases(n, seed):
    rng = random.Random(seed)
    cases = []
    fixed = [("gpt2", 1, "half", 1), ("gpt2", 0, "half", 1), ("llama", 0, "half", 2), ("llama", 1, "interleaved", 4),
             ("llama", 0, "interleaved", 1), ("llama", 1, "half", 1)]
    for i in range(n):
        fam, tied, rope, gqa = fixed[i] if i < len(fixed) else (rng.choice(["gpt2", "llama"]), rng.randrange(2),
                                                                rng.choice(["half", "interleaved"]), rng.choice([1, 2]))
        NH = 4 if gqa > 2 else rng.choice([2, 4])
        HS = rng.choice([4, 6, 8])
        NKV = NH // gqa if fam == "llama" and NH % gqa == 0 else NH
        C = NH * HS
        cfg = dict(family=fam, n_layers=rng.choice([1, 2, 3]), dim=C, n_heads=NH, n_kv_heads=NKV,
                   ffn_dim=rng.choice([C * 2, C * 3 + 1, 4 * C]), vocab_size=rng.choice([31, 64, 101]),
                   context=32, tied=bool(tied), norm_eps=1e-5, rope_theta=rng.choice([10000.0, 500.0]),
                   rope_layout=rope)
        cases.append(dict(name=f"{fam} L{cfg['n_layers']} C{C} NH{NH} NKV{NKV} {'tied' if tied else 'untied'}"
                               f"{' ' + rope if fam == 'llama' else ''}",
                          cfg=cfg, B=rng.choice([1, 2, 3]), T=rng.choice([5, 9, 16]), seed=100 + i,
                          weighted=i % 2 == 1))
    return cases


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    exe = sys.argv[1]
    rlhf = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("RLHF_EXE")
    with tempfile.TemporaryDirectory() as tmp:
        for case in random_cases(10, 7):
            run_dump(exe, case, tmp)
        # The commands exist now: a missing or placeholder command is a failure, not a note.
        check(cli_implemented(rlhf), "`rlhf model new/loss/logits` are real commands")
        for case in random_cases(4, 8):
            run_cli(rlhf, case, tmp)
    print(f"test_torch_model: {CHECKS[0]} checks, {len(FAILS)} failed", file=sys.stderr)
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
