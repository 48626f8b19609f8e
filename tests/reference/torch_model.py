"""torch_model.py - a reference GPT-2 and Llama written directly in torch, plus safetensors I/O.

Independent of the C engine and of `transformers` (Debian ships no transformers): the models
are written from the published architectures, take a config dict and a dict of tensors under
Hugging Face names (GPT2LMHeadModel / LlamaForCausalLM layouts: GPT-2 Conv1D weights [in, out],
Llama Linear weights [out, in]), and run in whatever dtype the tensors have (the tests use
float64, so the reference's own rounding is negligible next to the engine's float32).

    cfg = config_from_hf(json.load(open("config.json")))
    params = {k: v.double().requires_grad_() for k, v in st_read("model.safetensors").items()}
    logits, hidden = forward(cfg, params, tokens)          # tokens: (B, T) int64
    loss, losses = xent(logits, targets, weights)           # targets -1 = ignored

Config keys: family ('gpt2' | 'llama'), n_layers, dim, n_heads, n_kv_heads, ffn_dim,
vocab_size, context, tied, norm_eps, rope_theta, rope_layout ('half' | 'interleaved').
"""
import json
import math
import struct

import torch
import torch.nn.functional as F

# ---- safetensors: 8-byte little-endian header length, JSON header, raw little-endian data ----

_DTYPES = {
    "F64": (torch.float64, 8), "F32": (torch.float32, 4), "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2), "I64": (torch.int64, 8), "I32": (torch.int32, 4),
    "I16": (torch.int16, 2), "I8": (torch.int8, 1), "U8": (torch.uint8, 1), "BOOL": (torch.bool, 1),
}
_NAMES = {v[0]: k for k, v in _DTYPES.items()}


def st_read(path):
    """Returns {name: tensor} (and ignores __metadata__). Checks offsets against the file."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: shorter than the 8-byte header length")
    (hlen,) = struct.unpack("<Q", raw[:8])
    if 8 + hlen > len(raw):
        raise ValueError(f"{path}: header length {hlen} runs past the end of the file")
    header = json.loads(raw[8:8 + hlen].decode("utf-8"))
    data = raw[8 + hlen:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, size = _DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        shape = list(info["shape"])
        numel = math.prod(shape) if shape else 1
        if end - begin != numel * size or end > len(data):
            raise ValueError(f"{path}: tensor {name} has offsets {begin}..{end} for {numel} x {size} bytes")
        buf = bytearray(data[begin:end])
        t = torch.frombuffer(buf, dtype=dtype) if numel else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(shape).clone()
    return out


def st_write(path, tensors, metadata=None):
    """Writes {name: tensor} in the given order (float32 unless the tensor says otherwise)."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        b = t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)  # the format pads the header to 8 bytes with spaces
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---- config ----

def config_from_hf(d):
    """A Hugging Face config.json dict (GPT2Config or LlamaConfig fields) as a reference config."""
    if d.get("model_type") == "gpt2" or "n_embd" in d:
        n_heads = d["n_head"]
        return dict(family="gpt2", n_layers=d["n_layer"], dim=d["n_embd"], n_heads=n_heads, n_kv_heads=n_heads,
                    ffn_dim=d.get("n_inner") or 4 * d["n_embd"], vocab_size=d["vocab_size"],
                    context=d.get("n_positions", d.get("n_ctx", 1024)), tied=d.get("tie_word_embeddings", True),
                    norm_eps=d.get("layer_norm_epsilon", 1e-5), rope_theta=0.0, rope_layout="half")
    n_heads = d["num_attention_heads"]
    return dict(family="llama", n_layers=d["num_hidden_layers"], dim=d["hidden_size"], n_heads=n_heads,
                n_kv_heads=d.get("num_key_value_heads") or n_heads, ffn_dim=d["intermediate_size"],
                vocab_size=d["vocab_size"], context=d.get("max_position_embeddings", 2048),
                tied=d.get("tie_word_embeddings", False), norm_eps=d.get("rms_norm_eps", 1e-6),
                rope_theta=d.get("rope_theta", 10000.0), rope_layout=d.get("rlhf_rope_layout", "half"))


def param_names(cfg):
    """Hugging Face tensor names of a config, in checkpoint order."""
    L = cfg["n_layers"]
    if cfg["family"] == "gpt2":
        names = ["transformer.wte.weight", "transformer.wpe.weight"]
        for l in range(L):
            p = f"transformer.h.{l}."
            names += [p + s for s in ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                                      "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                                      "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")]
        names += ["transformer.ln_f.weight", "transformer.ln_f.bias"]
    else:
        names = ["model.embed_tokens.weight"]
        for l in range(L):
            p = f"model.layers.{l}."
            names += [p + s for s in ("input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                      "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                                      "post_attention_layernorm.weight", "mlp.gate_proj.weight",
                                      "mlp.up_proj.weight", "mlp.down_proj.weight")]
        names += ["model.norm.weight"]
    if not cfg["tied"]:
        names.append("lm_head.weight")
    return names


# ---- the models ----

def _attention(q, k, v):
    """q (B, NH, T, HS), k and v (B, NKV, T, HS); causal softmax(q k^T / sqrt(HS)) v."""
    B, NH, T, HS = q.shape
    rep = NH // k.shape[1]
    if rep > 1:  # grouped-query: query head h reads key/value head h // rep
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
    s = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    s = s.masked_fill(~mask, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def _rope(x, pos, theta, layout):
    """Rotates x (B, H, T, HS) at positions pos (T); angles computed in float64."""
    HS = x.shape[-1]
    inv = theta ** (-torch.arange(0, HS, 2, dtype=torch.float64) / HS)
    ang = pos.to(torch.float64)[:, None] * inv[None, :]  # (T, HS/2)
    c, s = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    if layout == "half":  # Hugging Face rotate_half: i pairs with i + HS/2
        x1, x2 = x[..., : HS // 2], x[..., HS // 2:]
        return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)
    xr = x.reshape(*x.shape[:-1], HS // 2, 2)  # llama2.c: 2i pairs with 2i + 1
    a, b = xr[..., 0], xr[..., 1]
    return torch.stack([a * c - b * s, a * s + b * c], dim=-1).reshape(x.shape)


def _rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def forward(cfg, p, tokens):
    """Returns (logits (B, T, V), hidden (B, T, C)) for tokens (B, T)."""
    B, T = tokens.shape
    C, NH, L = cfg["dim"], cfg["n_heads"], cfg["n_layers"]
    NKV = cfg["n_kv_heads"]
    HS = C // NH
    eps = cfg["norm_eps"]
    if cfg["family"] == "gpt2":
        x = p["transformer.wte.weight"][tokens] + p["transformer.wpe.weight"][:T][None]
        for l in range(L):
            g = lambda s: p[f"transformer.h.{l}.{s}"]  # noqa: E731
            h = F.layer_norm(x, (C,), g("ln_1.weight"), g("ln_1.bias"), eps)
            qkv = h @ g("attn.c_attn.weight") + g("attn.c_attn.bias")  # Conv1D: [in, out]
            q, k, v = (t.reshape(B, T, NH, HS).transpose(1, 2) for t in qkv.split(C, dim=-1))
            y = _attention(q, k, v).transpose(1, 2).reshape(B, T, C)
            x = x + y @ g("attn.c_proj.weight") + g("attn.c_proj.bias")
            h = F.layer_norm(x, (C,), g("ln_2.weight"), g("ln_2.bias"), eps)
            h = F.gelu(h @ g("mlp.c_fc.weight") + g("mlp.c_fc.bias"), approximate="tanh")
            x = x + h @ g("mlp.c_proj.weight") + g("mlp.c_proj.bias")
        hidden = F.layer_norm(x, (C,), p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], eps)
        head = p["transformer.wte.weight"] if cfg["tied"] else p["lm_head.weight"]
    else:
        pos = torch.arange(T)
        x = p["model.embed_tokens.weight"][tokens]
        for l in range(L):
            g = lambda s: p[f"model.layers.{l}.{s}"]  # noqa: E731
            h = _rmsnorm(x, g("input_layernorm.weight"), eps)
            q = (h @ g("self_attn.q_proj.weight").T).reshape(B, T, NH, HS).transpose(1, 2)  # Linear: [out, in]
            k = (h @ g("self_attn.k_proj.weight").T).reshape(B, T, NKV, HS).transpose(1, 2)
            v = (h @ g("self_attn.v_proj.weight").T).reshape(B, T, NKV, HS).transpose(1, 2)
            q = _rope(q, pos, cfg["rope_theta"], cfg["rope_layout"])
            k = _rope(k, pos, cfg["rope_theta"], cfg["rope_layout"])
            y = _attention(q, k, v).transpose(1, 2).reshape(B, T, C)
            x = x + y @ g("self_attn.o_proj.weight").T
            h = _rmsnorm(x, g("post_attention_layernorm.weight"), eps)
            h = F.silu(h @ g("mlp.gate_proj.weight").T) * (h @ g("mlp.up_proj.weight").T)
            x = x + h @ g("mlp.down_proj.weight").T
        hidden = _rmsnorm(x, p["model.norm.weight"], eps)
        head = p["model.embed_tokens.weight"] if cfg["tied"] else p["lm_head.weight"]
    return hidden @ head.T, hidden


def xent(logits, targets, weights=None):
    """Weighted mean next-token cross-entropy over positions with targets >= 0, and the
    per-position losses (0 where ignored)."""
    V = logits.shape[-1]
    lp = torch.log_softmax(logits.reshape(-1, V), dim=-1)
    t = targets.reshape(-1)
    keep = t >= 0
    nll = torch.zeros_like(lp[:, 0])
    nll[keep] = -lp[keep, t[keep]]
    w = torch.ones_like(nll) if weights is None else weights.reshape(-1).to(nll.dtype)
    w = torch.where(keep, w, torch.zeros_like(w))
    return (w * nll).sum() / w.sum(), nll.reshape(targets.shape)
