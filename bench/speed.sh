#!/bin/sh
# The speed table of the README (issue 9): init models of llama2.c's
# stories15M and stories110M shapes in F32, F16, Q8_0 and Q4_0, decoded side
# by side in one run per shape (`doze bench A B C D`: rounds interleaved, every
# figure a median (min-max) of them, UNRELIABLE past a 2x spread, so
# the ratios between types see the same machine load), in wasm under Node
# (one thread) and natively. Needs `npm run build` first.
#   sh bench/speed.sh [OUTDIR]     (models are written to OUTDIR, default a temp dir)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$(mktemp -d)}
doze="$root/build/doze"
mkdir -p "$out"
for shape in s15 s110; do
  case $shape in
    s15) args="--dim 288 --hidden 768 --layers 6 --heads 6 --kv-heads 6" steps=16 ;;
    s110) args="--dim 768 --hidden 2048 --layers 12 --heads 12 --kv-heads 12" steps=4 ;;
  esac
  models=""
  for t in f32 f16 q8_0 q4_0; do
    f="$out/$shape-$t.gguf"
    [ -f "$f" ] || "$doze" init $args --vocab 32000 --ctx 256 --seed 1 --type $t -o "$f" >/dev/null
    models="$models $f"
  done
  echo "== $shape, wasm (node $(node --version))"
  node "$root/js/cli.js" bench $models --steps $steps
  echo "== $shape, native (SIMDe)"
  "$doze" bench $models --steps $steps
done
