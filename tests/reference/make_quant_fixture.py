#!/usr/bin/env python3
"""Writes tests/reference/quant_blocks.txt: random blocks of every GGUF quantisation type that
src/model/quants.c dequantises, with the values llama.cpp's own gguf-py (gguf.quants.dequantize)
gives for them. The fixture is committed; this script documents how it was made and needs a
llama.cpp checkout's gguf-py (not part of this project) to run again:

    PYTHONPATH=/path/to/llama.cpp/gguf-py /usr/bin/python3 tests/reference/make_quant_fixture.py > \
        tests/reference/quant_blocks.txt

Block bytes are random except the half-precision scale fields, which are set to finite values
in +-[0.01, 1] (random bits there would often be inf/NaN). Format, one type per three lines:
    TYPE <ggml type id> <name> <blocks>
    bytes <hex of all blocks>
    values <float32 bit patterns, 8 hex digits each>
"""
import numpy as np
from gguf import quants
from gguf.constants import GGMLQuantizationType as Q

# (type, block bytes, offsets of its f16 fields)
TYPES = [
    (Q.Q4_0, 18, [0]), (Q.Q4_1, 20, [0, 2]), (Q.Q5_0, 22, [0]), (Q.Q5_1, 24, [0, 2]),
    (Q.Q8_0, 34, [0]), (Q.Q2_K, 84, [80, 82]), (Q.Q3_K, 110, [108]), (Q.Q4_K, 144, [0, 2]),
    (Q.Q5_K, 176, [0, 2]), (Q.Q6_K, 210, [208]),
]
BLOCKS = 3
rng = np.random.default_rng(20261202)
print("# made by tests/reference/make_quant_fixture.py with llama.cpp's gguf-py (gguf.quants.dequantize)")
for qt, size, halves in TYPES:
    raw = rng.integers(0, 256, size=(BLOCKS, size), dtype=np.uint8)
    for b in range(BLOCKS):
        for off in halves:
            v = np.float16(rng.uniform(0.01, 1.0) * (1 if rng.integers(0, 2) else -1))
            raw[b, off:off + 2] = np.frombuffer(v.tobytes(), dtype=np.uint8)
    vals = quants.dequantize(raw.reshape(-1), qt).astype(np.float32).reshape(-1)
    assert np.all(np.isfinite(vals)), qt.name
    print(f"TYPE {int(qt)} {qt.name} {BLOCKS}")
    print("bytes " + raw.tobytes().hex())
    print("values " + " ".join(f"{x:08x}" for x in vals.view(np.uint32)))
