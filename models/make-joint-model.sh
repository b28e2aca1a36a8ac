#!/bin/sh
# Makes the default model's jointly trained twin: the same vocabulary, shape
# and schedule as models/make-model.sh, but weights and gates trained
# together from scratch (doze train --gates): each window draws its budget
# from 0.4..1 (a fifth of them dense), hard masks with the inference
# semantics, cross-entropy plus the compute term. Writes
#   models/doze-stories-joint.gguf         the model (f32)
#   models/doze-stories-joint.gates.gguf   its gates (budget table retuned on the text)
#   models/doze-stories-joint.train.log    this recipe's output
# then scores it on the dev text at b = 1, 0.7, 0.5, 0.3.
#
#   sh models/make-joint-model.sh      (after npm run build:native; ~40 min on one thread)
#
# Environment: DOZE (default build/doze), TEXT (default ../shared/text), OUT
# (default models/), THREADS (default 1; the bits do not depend on it),
# STEPS (default 2400, the default model's schedule).
set -eu
. "$(dirname "$0")/env.sh"
THREADS=${THREADS:-1}
STEPS=${STEPS:-2400}
M=$OUT/doze-stories-joint.gguf
G=$OUT/doze-stories-joint.gates.gguf

{
"$DOZE" train "$TRAIN" --vocab "$OUT/doze-stories.vocab.gguf" \
    --dim 128 --layers 4 --heads 4 --kv-heads 4 --hidden 352 --ctx 256 \
    --batch 8 --steps "$STEPS" --lr 2e-3 --min-lr 2e-4 --warmup 150 --schedule cosine \
    --wd 0.1 --clip 1 --seed 1 --threads "$THREADS" \
    --gates --budget-range 0.4:1 --dense-fraction 0.2 --gates-out "$G" \
    --name doze-stories -o "$M"

"$DOZE" ppl "$M" "$DEV"
for b in 0.7 0.5 0.3; do "$DOZE" ppl "$M" "$DEV" --budget $b --gates "$G"; done
"$DOZE" generate "$M" --prompt "Once upon a time" --temp 0 --steps 120
} 2>&1 | tee "$OUT/doze-stories-joint.train.log"
