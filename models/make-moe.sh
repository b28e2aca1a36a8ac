#!/bin/sh
# Makes Doze's own small mixture of experts from the TinyStories text, with
# the default model's vocabulary (models/doze-stories.vocab.gguf):
#   models/doze-stories-moe.gguf        the model (doze train --experts), F16
#   models/doze-stories-moe.train.log   this recipe's output
# then scores it on the dev text (doze ppl) and prints a sample.
#
#   sh models/make-moe.sh        (after npm run build:native; ~20 min on one thread)
#
# Environment: DOZE (the doze binary, default build/doze), TEXT (the folder
# with tinystories-train.txt / tinystories-dev.txt, default ../shared/text),
# OUT (default models/), THREADS (default 1). Training is deterministic for
# the seed whatever the thread count.
set -eu
. "$(dirname "$0")/env.sh"
THREADS=${THREADS:-1}
LOG=$OUT/doze-stories-moe.train.log

{
# 8 experts of 128 channels per layer, 2 per token: the dense model's
# shape otherwise (dim 128, 4 layers, 4 heads, context 256)
"$DOZE" train "$TRAIN" --vocab "$OUT/doze-stories.vocab.gguf" \
    --dim 128 --layers 4 --heads 4 --kv-heads 4 --hidden 128 --experts 8 --top-k 2 --balance-loss 0.01 \
    --ctx 256 --batch 8 --steps 1300 --lr 2e-3 --min-lr 2e-4 --warmup 100 --schedule cosine \
    --wd 0.1 --clip 1 --seed 1 --threads "$THREADS" \
    --eval "$DEV" --eval-every 100 --eval-windows 64 \
    --name doze-stories-moe --type f16 -o "$OUT/doze-stories-moe.gguf"

"$DOZE" ppl "$OUT/doze-stories-moe.gguf" "$DEV"
"$DOZE" generate "$OUT/doze-stories-moe.gguf" --prompt "Once upon a time" --temp 0 --steps 120
} 2>&1 | tee "$LOG"
