#!/bin/sh
# Makes Doze's small mixture of experts trained jointly with its gates from
# scratch (doze train --experts --gates): the shape of models/make-moe.sh
# (dim 128, 4 layers, 4 heads, 8 experts x 128, top-2, balance 0.01) on the
# joint default model's schedule (models/make-joint-model.sh: 2,400 steps,
# 150 warm-up), each window's budget drawn from 0.4..1, a fifth of them
# dense. Training runs each token's top 2 experts; the experts' constants
# are calibrated on the trained model at the end. Writes
#   models/doze-stories-moe-joint.gguf         the model (f32)
#   models/doze-stories-moe-joint.gates.gguf   its gates (expert constants and table on the text)
#   models/doze-stories-moe-joint.train.log    this recipe's output
# then scores it on the dev text dense, under budgets and at a fixed top-1.
#
#   sh models/make-moe-joint.sh     (after npm run build:native; ~32 min at THREADS=2
#                                    on a shared 2-core machine)
#
# Environment: DOZE (default build/doze), TEXT (default ../shared/text), OUT
# (default models/), THREADS (default 1; the bits do not depend on it).
set -eu
. "$(dirname "$0")/env.sh"
THREADS=${THREADS:-1}
M=$OUT/doze-stories-moe-joint.gguf
G=$OUT/doze-stories-moe-joint.gates.gguf

{
"$DOZE" train "$TRAIN" --vocab "$OUT/doze-stories.vocab.gguf" \
    --dim 128 --layers 4 --heads 4 --kv-heads 4 --hidden 128 --experts 8 --top-k 2 --balance-loss 0.01 \
    --ctx 256 --batch 8 --steps 2400 --lr 2e-3 --min-lr 2e-4 --warmup 150 --schedule cosine \
    --wd 0.1 --clip 1 --seed 1 --threads "$THREADS" \
    --gates --budget-range 0.4:1 --dense-fraction 0.2 --gates-out "$G" \
    --name doze-stories-moe-joint -o "$M"

"$DOZE" ppl "$M" "$DEV"
for b in 0.95 0.85 0.7457 0.7 0.6; do "$DOZE" ppl "$M" "$DEV" --budget $b --gates "$G"; done
"$DOZE" ppl "$M" "$DEV" --experts-used 1
"$DOZE" generate "$M" --prompt "Once upon a time" --temp 0 --steps 120
} 2>&1 | tee "$OUT/doze-stories-moe-joint.train.log"
