#!/bin/bash
# Everything a lent GPU session measures, in one call (device time is short: ~15 min a session, 10 min a command).
# On this machine:   npm run build:cli && bash ../shared/gpu/prepare.sh dist/cli
# Device command:    source .gpu/prologue.sh && bash bench/gpu-session.sh      (carry [".gpu"], timeout_s 600; results under $OUT)
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
# The device call may run 600 s: each step gets at most its own limit and what is left before END (570 s from now).
END=$((SECONDS + 570))
run() { # name limit command...
  local name=$1 limit=$2; shift 2
  local left=$((END - SECONDS)); (( left < limit )) && limit=$left
  if (( limit < 10 )); then echo "$name skipped (no time left)" >> "$OUT/status.txt"; return; fi
  timeout "$limit" "$@" > "$OUT/$name.out" 2> "$OUT/$name.stderr"; echo "$name rc=$? (limit ${limit}s)" >> "$OUT/status.txt"
}
train() { # name lr
  run "$1" 300 "$NODE" "$CLI" train --model $M --dataset $D/finetune.jsonl --heldout $D/heldout.jsonl \
    --steps 180 --train-from 4 --microbatch 2 --seq 512 --lr-peak "$2" --out "$OUT/$1" --no-export
  rm -f "$OUT/$1/train-state.safetensors"
}
train demo-lr2e-4 2e-4 & train demo-lr2e-3 2e-3 & wait
for mb in 2 8; do run "synthetic-qwen3-30b-a3b-${mb}x512" 60 "$NODE" "$CLI" bench --synthetic qwen3-30b-a3b --train-layers 8 --microbatch $mb --seq 512; done
run bench 60 "$NODE" "$CLI" bench
run quant-report-demo 60 "$NODE" "$CLI" quant-report --model $M --data $D/heldout.jsonl --seq 512
run bench-train-q4 45 "$NODE" "$CLI" bench --only train --quantize-experts
run synthetic-qwen3-30b-a3b-2x512-8gib 45 "$NODE" "$CLI" bench --synthetic qwen3-30b-a3b --train-layers 8 --microbatch 2 --seq 512 --gpu-gib 8
cat "$OUT/status.txt"; tail -n 3 "$OUT"/*/summary.json 2>/dev/null | head -40
