#!/bin/bash
# Gets the repository ready for one device call that runs bench/gpu-session.sh, within the 64 MiB that may travel.
#   bash bench/gpu-prepare.sh            build the CLI; ../shared/gpu/prepare.sh makes .gpu/ (Node, Dawn, Vulkan loader, CLI);
#                                        Node is stripped and packed harder (-2.3 MB); then the git index keeps only what the
#                                        session reads (the demo model, its data, the session script) and .git/info/exclude
#                                        hides the rest, so that only those files and .gpu/ travel (~60 MB of 64 MiB).
#   bash bench/gpu-prepare.sh --restore  puts the full index back and removes those exclude lines (nothing else is touched).
# It refuses to run with uncommitted changes, so the saved index is exactly HEAD's and nothing can be lost.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
saved=.git/index.usaf-full
begin='# usaf gpu-prepare: begin'; end='# usaf gpu-prepare: end'
restore() {
  if [ -f $saved ]; then mv $saved .git/index; echo "index restored"; fi
  if grep -qx "$begin" .git/info/exclude 2>/dev/null; then
    sed -i "/^$begin\$/,/^$end\$/d" .git/info/exclude; echo "exclude lines removed"
  fi
}
if [ "${1:-}" = --restore ]; then restore; git status --short | head; exit 0; fi
[ -f $saved ] && { echo "already prepared: run with --restore first" >&2; exit 1; }
[ -z "$(git status --porcelain)" ] || { echo "commit or stash your changes first" >&2; exit 1; }

npm run -s build:cli
node scripts/build-cli.mjs bench/gemm-bench.ts dist/cli/gemm-bench.mjs   # gpu-session.sh's GEMM bench, carried in .gpu/cli
node scripts/build-cli.mjs bench/upload-bench.ts dist/cli/upload-bench.mjs   # its hosted-experts copy bench
out=$(bash ../shared/gpu/prepare.sh dist/cli 2>&1) || { echo "$out" >&2; exit 1; }
echo "$out" | grep -v -e '^prepared' -e 'TOO BIG' || true   # sizes are checked below, once only what travels is left
# A stripped Node packed with xz -9e (cached by the binary's hash): 21.9 MB instead of 24.2.
node_bin=$(readlink -f "$(command -v node)"); key=$(sha1sum "$node_bin" | cut -c1-12)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/gpu-kit; mkdir -p "$cache"
if [ ! -f "$cache/node-stripped-$key.xz" ]; then
  cp "$node_bin" "$cache/node-tmp" && strip "$cache/node-tmp" && xz -T0 -9e -c "$cache/node-tmp" > "$cache/node-stripped-$key.xz"
  rm -f "$cache/node-tmp"
fi
cp "$cache/node-stripped-$key.xz" .gpu/node.xz

keep=(public/models/usaf-demo-moe public/data bench/gpu-session.sh)
cp .git/index $saved
git rm -r -q --cached .
git add -f "${keep[@]}"
{ echo "$begin"; echo '/*'; echo '!/public/'; echo '/public/*'; echo '!/public/models/'; echo '!/public/data/'
  echo '!/bench/'; echo '/bench/*'; echo '!/bench/gpu-session.sh'; echo "$end"; } >> .git/info/exclude
travel=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 -r du -cb | tail -1 | cut -f1)
gpu=$(du -sb .gpu | cut -f1); total=$((travel + gpu))
echo "travels: files $travel + .gpu $gpu = $total bytes of 67108864"
(( total < 67108864 )) || { echo "still too big; restoring" >&2; restore; exit 1; }
echo "now: device run, carry [\".gpu\"], timeout_s 600, command 'source .gpu/prologue.sh && bash bench/gpu-session.sh'"
echo "then: bash bench/gpu-prepare.sh --restore"
