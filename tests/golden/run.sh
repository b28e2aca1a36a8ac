#!/bin/sh
# Golden outputs of a fixed set of runs, to prove a refactor changes no bit:
#   tests/golden/run.sh DOZE_BINARY DOZE_WASM OUTDIR
# then `diff -r OLD_OUTDIR NEW_OUTDIR` (empty = byte-identical). The runs:
# stories260K greedy (trace, logits, masks), gates at b = 0.7 and 0.5
# (masks, logits), a prefill of 128+ prompt tokens (logits), a gate
# fine-tune of 20 steps (printed losses, the gate file), and forced masks
# through the JS API on the given wasm (per-step logits hashes).
set -eu
DOZE=$1; WASM=$2; OUT=$3
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=$ROOT/../shared
mkdir -p "$OUT"; W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
"$DOZE" convert llama2c "$SHARED/models/stories260K.bin" "$SHARED/models/tok512.bin" -o "$W/s260.gguf" >/dev/null
M=$W/s260.gguf; DEV=$SHARED/text/tinystories-dev.txt; TRAIN=$SHARED/text/tinystories-train.txt
head -c 4000 "$TRAIN" > "$W/calib.txt"
"$DOZE" generate "$M" --steps 200 --trace "$OUT/greedy.trace" --logits "$W/greedy.logits" --masks "$OUT/greedy.masks" > "$OUT/greedy.txt" 2>/dev/null
for b in 0.7 0.5; do
  "$DOZE" generate "$M" --prompt "Once upon a time" --steps 160 --budget $b --calib "$W/calib.txt" \
    --masks "$OUT/gates$b.masks" --logits "$W/gates$b.logits" > "$OUT/gates$b.txt" 2>/dev/null
done
P=$(head -c 700 "$DEV" | tr '\n' ' ')
# unobserved, so the prompt goes through the batched prefill
"$DOZE" generate "$M" --prompt "$P" --steps 400 > "$OUT/prefill.txt" 2>/dev/null
"$DOZE" ppl "$M" "$DEV" --ctx 128 > "$OUT/ppl.txt" 2>/dev/null
"$DOZE" ppl "$M" "$DEV" --ctx 128 --budget 0.6 --calib "$W/calib.txt" > "$OUT/ppl0.6.txt" 2>/dev/null
"$DOZE" finetune "$M" "$TRAIN" --budget 0.6 --steps 20 --ctx 64 --batch 4 -o "$W/ft.gates.gguf" 2>&1 \
  | sed 's/ *[0-9.]* tok\/s.*//; s/ in [0-9.]* s:.*//; s/ ([0-9]* ms)//' > "$OUT/finetune.log"
node "$ROOT/tests/golden/forced.mjs" "$M" "$WASM" 48 > "$OUT/forced.txt"
( cd "$W" && sha256sum greedy.logits gates0.7.logits gates0.5.logits ft.gates.gguf ) > "$OUT/hashes.txt"
echo "golden outputs in $OUT"
