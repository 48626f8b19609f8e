// tiktoken_bench.js — OpenAI's tiktoken (npm, encoding "gpt2") encode throughput on one file, the
// reference for bench_tokenizer. Prints {"mb_per_s": best of N runs, "tokens": count}.
// Usage: NODE_PATH=DIR/node_modules node tiktoken_bench.js FILE [RUNS]
const { get_encoding } = require("tiktoken");
const fs = require("fs");
const text = fs.readFileSync(process.argv[2], "utf8");
const runs = Number(process.argv[3] || 5);
const bytes = Buffer.byteLength(text, "utf8");
const enc = get_encoding("gpt2");
let best = 0, tokens = 0;
for (let r = 0; r < runs; r++) {
  const t0 = process.hrtime.bigint();
  const ids = enc.encode(text);
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  tokens = ids.length;
  best = Math.max(best, bytes / dt / 1e6);
}
enc.free();
console.log(JSON.stringify({ mb_per_s: best, tokens: tokens }));
