#!/bin/bash
# Everything a lent GPU session measures, in one call (device time is short: ~15 min a session, 10 min a command).
# On this machine:   npm run build:cli && bash ../shared/gpu/prepare.sh dist/cli
# Device command:    source .gpu/prologue.sh && bash bench/gpu-session.sh      (carry [".gpu"]; results under $OUT)
# Then copy $OUT/* to bench/results/<date>-h200/ and commit.
#   B.9  two 180-step seed-method runs of the demo model (LR 2e-4 and 2e-3, layers 4-7, unquantized), in parallel
#   A.10/B.10  npm run bench's JSON (matmul GFLOP/s, forward and training tok/s with phase shares)
#   C.8  the synthetic Qwen3-30B-A3B scale bench (2x512 and 8x512)
#   C.2  quant-report of the demo model with the full held-out PPL, 4-bit experts vs unquantized
#   C.3  trained layers as f32 copies vs 4-bit base + f32 scratch: the demo's training bench both ways; the synthetic
#        bench in one chunk vs chunks sized for 8 GiB (what expert chunking costs)
set -uo pipefail
OUT=${OUT:-bench-out}; mkdir -p "$OUT"
CLI=${CLI:-.gpu/cli/usaf.mjs}; NODE=${NODE:-node}
M=public/models/usaf-demo-moe; D=public/data
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; date -u; git log -1 --format=%H 2>/dev/null; } > "$OUT/machine.txt" 2>&1
train() { # name lr
  timeout 420 "$NODE" "$CLI" train --model $M --dataset $D/finetune.jsonl --heldout $D/heldout.jsonl \
    --steps 180 --train-from 4 --microbatch 2 --seq 512 --lr-peak "$2" --out "$OUT/$1" --no-export \
    > "$OUT/$1.stdout" 2> "$OUT/$1.stderr"; echo "$1 rc=$?" >> "$OUT/status.txt"
  rm -f "$OUT/$1/train-state.safetensors"
}
train demo-lr2e-4 2e-4 & train demo-lr2e-3 2e-3 & wait
timeout 150 "$NODE" "$CLI" bench > "$OUT/bench.json" 2> "$OUT/bench.stderr"; echo "bench rc=$?" >> "$OUT/status.txt"
timeout 150 "$NODE" "$CLI" quant-report --model $M --data $D/heldout.jsonl --seq 512 > "$OUT/quant-report-demo.json" 2> "$OUT/quant-report.stderr"
echo "quant-report rc=$?" >> "$OUT/status.txt"
timeout 120 "$NODE" "$CLI" bench --only train --quantize-experts > "$OUT/bench-train-q4.json" 2> "$OUT/bench-q4.stderr"; echo "bench q4 rc=$?" >> "$OUT/status.txt"
timeout 120 "$NODE" "$CLI" bench --synthetic qwen3-30b-a3b --train-layers 8 --microbatch 2 --seq 512 --gpu-gib 8 \
  > "$OUT/synthetic-qwen3-30b-a3b-2x512-8gib.json" 2> "$OUT/synthetic-8gib.stderr"; echo "synthetic 8gib rc=$?" >> "$OUT/status.txt"
for mb in 2 8; do
  timeout 120 "$NODE" "$CLI" bench --synthetic qwen3-30b-a3b --train-layers 8 --microbatch $mb --seq 512 \
    > "$OUT/synthetic-qwen3-30b-a3b-${mb}x512.json" 2> "$OUT/synthetic-${mb}.stderr"; echo "synthetic $mb rc=$?" >> "$OUT/status.txt"
done
cat "$OUT/status.txt"; tail -n 3 "$OUT"/*/summary.json 2>/dev/null | head -40
