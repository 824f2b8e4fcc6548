#!/bin/bash
# Everything a lent GPU session measures, in one call (device time is short: ~15 min a session, 10 min a command).
# On this machine:   bash bench/gpu-prepare.sh            (builds the CLI, makes .gpu/, leaves only what travels in the index)
# Device command:    source .gpu/prologue.sh && bash bench/gpu-session.sh      (carry [".gpu"], timeout_s 600)
# Back here:         bash bench/gpu-prepare.sh --restore; unpack $OUT/results.tgz into bench/results/<date>-h200/ and commit.
#   B.9  two 180-step seed-method runs of the demo model (LR 2e-4 and 2e-3, layers 4-7, unquantized), in parallel
#   A.10/B.10  npm run bench's JSON (matmul GFLOP/s, forward and training tok/s with phase shares)
#   C.8  the synthetic Qwen3-30B-A3B scale bench (2x512 and 8x512)
#   C.2  quant-report of the demo model with the full held-out PPL, 4-bit experts vs unquantized
#   C.3  trained layers as f32 copies vs 4-bit base + f32 scratch: the demo's training bench both ways; the synthetic
#        bench in one chunk vs chunks sized for 8 GiB (what expert chunking costs)
# Issue H (run first, each part with its own timeout; the parts above come after, in what time is left):
#   H.cost   the cost model's estimate (CPU only, in the background): usaf bench --cost, 2x512 and 8x512, h100 and h200
#   H.gemm   each GEMM's GFLOP/s (matmul, qmatmul, routed experts; every tiling variant an op registers): gemm-bench.mjs
#   H.upload one layer's 4-bit experts copied from host-visible upload buffers into GPU slots (hosted experts, the
#            235B-in-16-GiB design), GB/s beside a GPU-to-GPU copy: upload-bench.mjs
#   H.train  the synthetic Qwen3-30B-A3B (8 layers, 4-bit experts) at 2x512 and 8x512: tokens/s of pipelined steps,
#            each step's GPU time and the per-phase times from timestamp queries (phase_ms_per_step), to set beside the
#            cost model's phases
# PARTS=h runs only the issue H parts.
# Only 8 files come back from $OUT: every output goes to one folder, packed into $OUT/results.tgz after each step (so a
# call cut short still returns what finished), with status.txt and summaries.txt beside it for a first look.
# SMOKE=1 runs the same steps at toy sizes (any adapter, SwiftShader included): the rehearsal of this script.
set -uo pipefail
OUT=${OUT:-bench-out}; mkdir -p "$OUT"
R=${RESULTS:-/tmp/usaf-gpu-results}; rm -rf "$R"; mkdir -p "$R"
CLI=${CLI:-.gpu/cli/usaf.mjs}; NODE=${NODE:-node}; GEMM=${GEMM:-$(dirname "$CLI")/gemm-bench.mjs}; UPLOAD=${UPLOAD:-$(dirname "$CLI")/upload-bench.mjs}
PARTS=${PARTS:-all}
M=public/models/usaf-demo-moe; D=public/data
SMOKE=${SMOKE:-0}
if [ "$SMOKE" = 1 ]; then
  STEPS=3; SEQ=32; EVAL=(--eval-every 0 --eval-windows 2); SYN=demo; SYN_SEQ=32; MBS="2"; QR=(--seq 32 --max-windows 2)
  H_MBS="1 2"; H_SEQ=16; H_LAYERS=1; H_STEPS=1; GEMM_ARGS=(--tiny); COST_DEVICES="h200"
else
  STEPS=180; SEQ=512; EVAL=(); SYN=qwen3-30b-a3b; SYN_SEQ=512; MBS="2 8"; QR=(--seq 512)
  H_MBS="2 8"; H_SEQ=512; H_LAYERS=8; H_STEPS=4; GEMM_ARGS=(); COST_DEVICES="h100 h200"
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; date -u; git log -1 --format=%H 2>/dev/null
  echo "smoke=$SMOKE node=$("$NODE" --version)"; } > "$R/machine.txt" 2>&1
pack() { tar czf "$OUT/results.tgz.part" -C "$R" . && mv "$OUT/results.tgz.part" "$OUT/results.tgz"; cp "$R/status.txt" "$OUT/" 2>/dev/null; }
# The device call may run 600 s: each step gets at most its own limit and what is left before END (570 s from now).
# SMOKE on SwiftShader is slow (kernel compiles alone take a minute): five times the limits there.
SLOW=1; [ "$SMOKE" = 1 ] && SLOW=5
END=$((SECONDS + 570 * SLOW))
run() { # name limit command...
  local name=$1 limit=$(($2 * SLOW)); shift 2
  local left=$((END - SECONDS)); (( left < limit )) && limit=$left
  if (( limit < 10 )); then echo "$name skipped (no time left)" >> "$R/status.txt"; return; fi
  local t0=$SECONDS
  timeout "$limit" "$@" > "$R/$name.out" 2> "$R/$name.stderr"
  echo "$name rc=$? in $((SECONDS - t0)) s (limit ${limit}s)" >> "$R/status.txt"
}
train() { # name lr
  run "$1" 300 "$NODE" "$CLI" train --model $M --dataset $D/finetune.jsonl --heldout $D/heldout.jsonl \
    --steps $STEPS --train-from 4 --microbatch 2 --seq $SEQ --lr-peak "$2" "${EVAL[@]}" --out "$R/$1" --no-export
  rm -f "$R/$1/train-state.safetensors"
}
# --- issue H ---
cost() { # the cost model is CPU work: it runs beside the GPU parts
  for dev in $COST_DEVICES; do for mb in $H_MBS; do
    run "cost-$SYN-${mb}x$H_SEQ-$dev" 240 "$NODE" "$CLI" bench --cost --synthetic $SYN --train-layers $H_LAYERS --microbatch $mb --seq $H_SEQ --device $dev
  done; done
}
cost & COST_PID=$!
run gemm 90 "$NODE" "$GEMM" "${GEMM_ARGS[@]}"; pack
run upload 30 "$NODE" "$UPLOAD" "${GEMM_ARGS[@]}"; pack
for mb in $H_MBS; do
  run "h-train-$SYN-${mb}x$H_SEQ" 150 "$NODE" "$CLI" bench --synthetic $SYN --train-layers $H_LAYERS --microbatch $mb --seq $H_SEQ --train-steps $H_STEPS; pack
done
wait $COST_PID; pack
if [ "$PARTS" != h ]; then
train demo-lr2e-4 2e-4 & train demo-lr2e-3 2e-3 & wait; pack
for mb in $MBS; do
  run "synthetic-$SYN-${mb}x$SYN_SEQ" 60 "$NODE" "$CLI" bench --synthetic $SYN --train-layers 8 --microbatch $mb --seq $SYN_SEQ; pack
done
run bench 60 "$NODE" "$CLI" bench; pack
run quant-report-demo 60 "$NODE" "$CLI" quant-report --model $M --data $D/heldout.jsonl "${QR[@]}"; pack
run bench-train-q4 45 "$NODE" "$CLI" bench --only train --quantize-experts; pack
run "synthetic-$SYN-2x$SYN_SEQ-8gib" 45 "$NODE" "$CLI" bench --synthetic $SYN --train-layers 8 --microbatch 2 --seq $SYN_SEQ --gpu-gib 8; pack
fi
{ for f in "$R"/*/summary.json; do echo "== $f"; cat "$f"; done; for f in "$R"/*.out; do echo "== $f"; tail -c 3000 "$f"; done; } \
  > "$OUT/summaries.txt" 2>&1
cat "$R/status.txt"
