#!/usr/bin/env python3
"""Pre-training actually learns: a small Llama (4 layers, d 128, byte tokenizer) trained with
`rlhf pretrain` on tinyshakespeare for 200 steps of 16 x 128 tokens must bring the validation
loss on the held-out tail well below the unigram entropy of that tail — the best any model that
ignores context can do — by at least 1 nat (the unigram entropy is about 3.34 nats per byte).

Usage: pretrain_converge.py RLHF_EXE TRAIN_STEPS_EXE   (RLHF_SHARED_DATA: the shared data dir)
"""
import collections
import json
import math
import os
import subprocess
import sys
import tempfile
import time

MARGIN_NATS = 1.0  # how far below the unigram entropy the final validation loss must be
VAL_FRACTION = 0.1


def unigram_entropy(data: bytes) -> float:
    counts = collections.Counter(data)
    n = len(data)
    return -sum(c / n * math.log(c / n) for c in counts.values())


def main() -> int:
    rlhf, make_model = sys.argv[1], sys.argv[2]
    root = os.environ.get("RLHF_SHARED_DATA", "../shared/data")
    path = os.path.join(root, "tinyshakespeare", "input.txt")
    if not os.path.exists(path):
        print(f"missing fixture {path}")
        return 1
    data = open(path, "rb").read()
    # The same split as dataset_text_init: the last floor(n * fraction) tokens (bytes) are held out.
    n_val = int(len(data) * VAL_FRACTION)
    h = unigram_entropy(data[len(data) - n_val:])
    with tempfile.TemporaryDirectory() as tmp:
        init, out, log = f"{tmp}/init", f"{tmp}/out", f"{tmp}/log.jsonl"
        subprocess.run([make_model, "--init-only", "--family", "llama", "--layers", "4", "--dim", "128",
                        "--heads", "4", "--kv-heads", "4", "--ffn", "384", "--vocab", "256", "--context", "128",
                        "--seed", "3", "--out", init], check=True, stdout=subprocess.DEVNULL)
        t0 = time.time()
        r = subprocess.run([rlhf, "pretrain", "--model", init, "--data", path, "--out", out, "--steps", "200",
                            "--batch", "16", "--context", "128", "--lr", "3e-3", "--min-lr", "3e-4", "--warmup", "20",
                            "--eval-every", "50", "--eval-batches", "8", "--save-every", "0",
                            "--val-fraction", str(VAL_FRACTION), "--json-log", log],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        elapsed = time.time() - t0
        print(r.stdout, end="")
        if r.returncode != 0:
            print(f"FAIL: rlhf pretrain exited {r.returncode}")
            return 1
        evals = [json.loads(line) for line in open(log) if '"val_loss"' in line]
    first, last = evals[0]["val_loss"], evals[-1]["val_loss"]
    print(f"held-out unigram entropy {h:.4f} nats; validation loss {first:.4f} at step 0 -> {last:.4f} at step "
          f"{evals[-1]['step']} in {elapsed:.0f} s")
    ok = last < h - MARGIN_NATS
    print(f"{'ok' if ok else 'FAIL'}: final validation loss {last:.4f} < unigram entropy {h:.4f} - {MARGIN_NATS}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
