"""make_seeds.py DATA OUT — the seed corpora of fuzz/ (see make_seeds.sh). One folder per harness."""
import json
import os
import random
import struct
import sys

data, out = sys.argv[1], sys.argv[2]
rng = random.Random(1)


def put(harness, name, content):
    d = os.path.join(out, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    with open(os.path.join(d, name), 'wb') as f:
        f.write(content)


def f16(x):
    return struct.pack('<e', x)


# ---- safetensors ----
def safetensors(tensors, meta=None):
    header, blobs, off = {}, b'', 0
    for name, dtype, shape, raw in tensors:
        header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [off, off + len(raw)]}
        blobs += raw
        off += len(raw)
    if meta is not None:
        header['__metadata__'] = meta
    h = json.dumps(header).encode()
    h += b' ' * (-len(h) % 8)
    return struct.pack('<Q', len(h)) + h + blobs


floats = lambda n: struct.pack('<%df' % n, *[rng.uniform(-1, 1) for _ in range(n)])
put('safetensors', 'f32', safetensors([('w', 'F32', [2, 3], floats(6)), ('b', 'F32', [3], floats(3))], {'format': 'pt'}))
put('safetensors', 'mixed', safetensors([('h', 'F16', [4], b''.join(f16(x) for x in (0.5, -2, 65504, 1e-7))),
                                         ('bf', 'BF16', [2, 2], b'\x80\x3f\x00\xc0\x80\x7f\xc0\x7f'),
                                         ('d', 'F64', [2], struct.pack('<2d', 1.5, -0.25)),
                                         ('i', 'I64', [], struct.pack('<q', 7)),
                                         ('u', 'U8', [0], b'')]))
put('safetensors', 'empty', safetensors([]))

# ---- config.json ----
put('config', 'gpt2_defaults', json.dumps({'model_type': 'gpt2', 'n_layer': 1, 'n_embd': 8, 'n_head': 2, 'vocab_size': 16, 'n_positions': 8}))
put('config', 'llama_full', json.dumps({'model_type': 'llama', 'architectures': ['LlamaForCausalLM'], 'num_hidden_layers': 1,
                                       'hidden_size': 8, 'num_attention_heads': 2, 'num_key_value_heads': 1, 'intermediate_size': 16,
                                       'vocab_size': 16, 'max_position_embeddings': 8, 'rms_norm_eps': 1e-6, 'rope_theta': 500000.0,
                                       'hidden_act': 'silu', 'head_dim': 4, 'attention_bias': False, 'mlp_bias': False,
                                       'rope_scaling': None, 'tie_word_embeddings': False, 'bos_token_id': 1, 'eos_token_id': [2, 3]}))

# ---- llama2.c .bin ----
def llama2c(dim, hidden, layers, heads, kv, vocab, seq, shared=True):
    hs = dim // heads
    n = vocab * dim + layers * (dim + dim * dim + 2 * dim * kv * hs + dim * dim + dim + 3 * dim * hidden) + dim + seq * hs
    if not shared:
        n += vocab * dim
    return struct.pack('<7i', dim, hidden, layers, heads, kv, vocab if shared else -vocab, seq) + floats(n)


put('llama2c', 'tiny', llama2c(8, 16, 1, 2, 1, 16, 4))
put('llama2c', 'tiny_unshared', llama2c(8, 12, 2, 2, 2, 8, 2, shared=False))
with open(os.path.join(data, 'stories260K', 'stories260K.bin'), 'rb') as f:
    put('llama2c', 'stories260K', f.read())

# ---- quant blocks: first byte picks the type (order of fuzz_quants.c), then two blocks ----
quant_sizes = [(2, 18), (3, 20), (6, 22), (7, 24), (8, 34), (10, 84), (11, 110), (12, 144), (13, 176), (14, 210)]
for k, (t, size) in enumerate(quant_sizes):
    blocks = bytearray(rng.getrandbits(8) for _ in range(2 * size))
    put('quants', 'type%d' % t, bytes([k]) + bytes(blocks))


# ---- GGUF ----
def gstr(s):
    s = s.encode() if isinstance(s, str) else s
    return struct.pack('<Q', len(s)) + s


def gval(v):
    """(type, bytes) of a Python value: str, int (u32 / i64 by sign), float, bool, list."""
    if isinstance(v, bool):
        return 7, bytes([v])
    if isinstance(v, int):
        return (4, struct.pack('<I', v)) if 0 <= v < 2**32 else (11, struct.pack('<q', v))
    if isinstance(v, float):
        return 6, struct.pack('<f', v)
    if isinstance(v, str):
        return 8, gstr(v)
    if isinstance(v, tuple):  # (type, bytes) given as is
        return v
    types = [gval(x) for x in v]
    et = types[0][0] if types else 4
    return 9, struct.pack('<IQ', et, len(v)) + b''.join(b for _, b in types)


def gguf(kvs, tensors, version=3, align=32):
    out = b'GGUF' + struct.pack('<IQQ', version, len(tensors), len(kvs))
    for k, v in kvs:
        t, b = gval(v)
        out += gstr(k) + struct.pack('<I', t) + b
    blob, infos = b'', b''
    for name, dims, typ, raw in tensors:
        blob += b'\0' * (-len(blob) % align)
        infos += gstr(name) + struct.pack('<I', len(dims)) + b''.join(struct.pack('<Q', d) for d in dims)
        infos += struct.pack('<IQ', typ, len(blob))
        blob += raw
    out += infos
    out += b'\0' * (-len(out) % align)
    return out + blob


qt = {t: s for t, s in quant_sizes}
qblock = lambda t, n: bytes(rng.getrandbits(8) for _ in range(n * qt[t]))
tensors = [('f32', [4, 2], 0, floats(8)), ('f16', [4], 1, b''.join(f16(x) for x in (1, -1, 0.5, 2))),
           ('bf16', [2], 30, b'\x80\x3f\x00\xc0'), ('q4_0', [32], 2, qblock(2, 1)), ('q8_0', [32, 2], 8, qblock(8, 2)),
           ('q4_k', [256], 12, qblock(12, 1)), ('q6_k', [256], 14, qblock(14, 1)), ('q2_k', [256], 10, qblock(10, 1))]
meta = [('general.architecture', 'llama'), ('general.alignment', 32), ('llama.block_count', 1), ('i64', -5),
        ('f', 0.25), ('b', True), ('f64', (12, struct.pack('<d', 2.5))), ('i8s', (9, struct.pack('<IQ', 1, 3) + b'\x01\xff\x7f')),
        ('strs', ['a', 'bc', ''])]
put('gguf', 'tensors_v3', gguf(meta, tensors))
put('gguf', 'tensors_v2', gguf(meta[:3], tensors[:2], version=2))
bytes_tok = ['<0x%02X>' % i for i in range(256)]
sp_tokens = ['<unk>', '<s>', '</s>'] + bytes_tok + ['\u2581', '\u2581t', 'he', '\u2581the', 'a', 'b', 'c']
put('gguf', 'tok_llama', gguf([('general.architecture', 'llama'), ('tokenizer.ggml.model', 'llama'),
                                ('tokenizer.ggml.tokens', sp_tokens),
                                ('tokenizer.ggml.scores', [float(-i) for i in range(len(sp_tokens))]),
                                ('tokenizer.ggml.token_type', [(5, struct.pack('<i', 3 if i < 3 else 6 if i < 259 else 1)) for i in range(len(sp_tokens))]),
                                ('tokenizer.ggml.bos_token_id', 1), ('tokenizer.ggml.eos_token_id', 2),
                                ('tokenizer.chat_template', "{% for m in messages %}{{ m['content'] }}{% endfor %}")], []))
b2u = {}
n = 0
for b in range(256):
    if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255:
        b2u[b] = chr(b)
    else:
        b2u[b] = chr(256 + n)
        n += 1
gpt2_tokens = [b2u[b] for b in range(256)] + ['\u0120t', 'he', '\u0120the', '<|endoftext|>']
put('gguf', 'tok_gpt2', gguf([('general.architecture', 'gpt2'), ('tokenizer.ggml.model', 'gpt2'), ('tokenizer.ggml.pre', 'llama-bpe'),
                               ('tokenizer.ggml.tokens', gpt2_tokens), ('tokenizer.ggml.merges', ['\u0120 t', 'h e', '\u0120t he']),
                               ('tokenizer.ggml.bos_token_id', 259), ('tokenizer.ggml.eos_token_id', 259)], []))


# ---- tokenizer.json (cut-down real ones) + tokenizer_config.json after a NUL ----
def cut_tokenizer(path, keep=400, short=0):
    t = json.load(open(path, encoding='utf-8'))
    vocab = t['model']['vocab']
    added = {a['content'] for a in t.get('added_tokens', [])}
    kept = {k: v for k, v in vocab.items() if v < keep or k.startswith('<0x') or (len(k) <= short and all(c < '\x7f' or c == '\u2581' for c in k))}
    merges = []
    for m in t['model']['merges']:
        a, b = m.split(' ', 1) if isinstance(m, str) else m
        if a in kept and b in kept and a + b in kept:
            merges.append(m)
    t['model']['vocab'] = kept
    t['model']['merges'] = merges
    t['added_tokens'] = [a for a in t.get('added_tokens', []) if a['id'] < keep or len(added) < 40][:40]
    return json.dumps(t, ensure_ascii=False)


# SentencePiece spends its first 259 ids on specials and bytes: keep its short ASCII pieces too
for name, keep, short in (('llama3-tokenizer', 400, 0), ('sp-bpe-32k', 600, 2)):
    d = os.path.join(data, name)
    tok = cut_tokenizer(os.path.join(d, 'tokenizer.json'), keep, short)
    cfg = json.load(open(os.path.join(d, 'tokenizer_config.json'), encoding='utf-8'))
    cfg.pop('chat_template', None)
    cfg.pop('added_tokens_decoder', None)
    put('tokenizer_json', name, tok)
    put('tokenizer_json', name + '+config', tok.encode() + b'\0' + json.dumps(cfg).encode())
# a llama2.c tokenizer.bin: max_token_length, then (score, length, bytes) per token
pieces = [b'<unk>', b'\n<s>\n', b'\n</s>\n'] + [bytes([i]) for i in range(256)] + [b' t', b'he', b' the']
put('tokenizer_json', 'llama2c.bin', struct.pack('<i', 8) + b''.join(struct.pack('<fi', -float(i), len(p)) + p for i, p in enumerate(pieces)))

# ---- GPT-2 encoder.json NUL vocab.bpe [NUL tokenizer_config.json] ----
enc = json.load(open(os.path.join(data, 'gpt2', 'encoder.json'), encoding='utf-8'))
kept = {k: v for k, v in enc.items() if v < 400}
kept['<|endoftext|>'] = 400
lines = open(os.path.join(data, 'gpt2', 'vocab.bpe'), encoding='utf-8').read().split('\n')
merges = [l for l in lines[1:] if l and l.split(' ')[0] in kept and l.split(' ')[1] in kept and l.replace(' ', '') in kept]
bpe = lines[0] + '\n' + '\n'.join(merges) + '\n'
put('gpt2_bpe', 'gpt2', json.dumps(kept, ensure_ascii=False).encode() + b'\0' + bpe.encode())
put('gpt2_bpe', 'gpt2+config', json.dumps(kept, ensure_ascii=False).encode() + b'\0' + bpe.encode() + b'\0' +
    json.dumps({'bos_token': '<|endoftext|>', 'eos_token': {'content': '<|endoftext|>'}, 'pad_token': None}).encode())

# ---- JSONL import: first byte is the format (0 TRL, 1 HH, 2 SFT) ----
hh = [json.loads(l) for l in open(os.path.join(data, 'hh-rlhf', 'harmless-base-test-300.jsonl'), encoding='utf-8')]
hh = [r for r in hh if len(r['chosen']) + len(r['rejected']) < 1500][:12]
for i in range(0, 12, 3):
    put('jsonl_import', 'hh%d' % i, b'\x01' + ''.join(json.dumps(r) + '\n' for r in hh[i:i + 3]).encode())


def split_hh(d):
    k = d.rfind('\n\nAssistant:')
    return d[:k + len('\n\nAssistant:')], d[k + len('\n\nAssistant:'):]


trl, trl_msgs, sft, sft_msgs = [], [], [], []
for r in hh[:4]:
    p, c = split_hh(r['chosen'])
    _, rj = split_hh(r['rejected'])
    trl.append(json.dumps({'prompt': p, 'chosen': c, 'rejected': rj}))
    u = [{'role': 'user', 'content': p.replace('\n\nHuman: ', '').replace('\n\nAssistant:', '')}]
    trl_msgs.append(json.dumps({'prompt': u, 'chosen': [{'role': 'assistant', 'content': c}],
                                'rejected': [{'role': 'assistant', 'content': rj}]}))
    sft.append(json.dumps({'prompt': p, 'completion': c}))
    sft_msgs.append(json.dumps({'messages': [{'role': 'system', 'content': 'Be kind.'}] + u + [{'role': 'assistant', 'content': c}]}))
put('jsonl_import', 'trl', b'\x00' + ('\n'.join(trl) + '\n').encode())
put('jsonl_import', 'trl_messages', b'\x04' + ('\n'.join(trl_msgs) + '\n\n').encode())
put('jsonl_import', 'sft', b'\x02' + ('\n'.join(sft)).encode())
put('jsonl_import', 'sft_messages', b'\x82' + ('\r\n'.join(sft_msgs) + '\n').encode())

# ---- chat templates, one per file ----
for i, t in enumerate(json.load(open(os.path.join(data, 'chat-templates', 'templates.json'), encoding='utf-8'))):
    put('chat_template', 'template%02d' % i, t['chat_template'])
for f in sorted(os.listdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'jinja_templates'))):
    put('chat_template', 'extra_' + f, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests',
                                                         'jinja_templates', f), encoding='utf-8').read())
print('make_seeds: %d corpora in %s' % (len(os.listdir(out)), out))
