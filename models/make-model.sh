#!/bin/sh
# Makes Doze's default model from the TinyStories text, with the seed:
#   models/doze-stories.vocab.gguf   the BPE vocabulary (doze vocab)
#   models/doze-stories.gguf         the model (doze train)
#   models/doze-stories.gates.gguf   its fine-tuned gates (doze finetune)
# then scores it on the dev text (doze ppl) and prints a sample.
#
#   npm run make-model            (after npm run build:native)
#
# Environment: DOZE (the doze binary, default build/doze), TEXT (the folder
# with tinystories-train.txt / tinystories-dev.txt, default ../shared/text),
# OUT (default models/), WORK (checkpoints, default build/). Training is
# deterministic for the seed whatever the thread count.
set -eu
. "$(dirname "$0")/env.sh"
WORK=${WORK:-$ROOT/build}
mkdir -p "$WORK"

"$DOZE" vocab "$TRAIN" --size 1024 -o "$OUT/doze-stories.vocab.gguf"

RESUME=""
if [ "${RESUME_FROM:-}" != "" ]; then RESUME="--resume $RESUME_FROM"; fi
"$DOZE" train "$TRAIN" --vocab "$OUT/doze-stories.vocab.gguf" \
    --dim 128 --layers 4 --heads 4 --kv-heads 4 --hidden 352 --ctx 256 \
    --batch 8 --steps 2400 --lr 2e-3 --min-lr 2e-4 --warmup 150 --schedule cosine \
    --wd 0.1 --clip 1 --seed 1 \
    --eval "$DEV" --eval-every 100 --eval-windows 64 \
    --ckpt "$WORK/doze-stories.ckpt.gguf" --ckpt-every 100 $RESUME \
    --name doze-stories -o "$OUT/doze-stories.gguf"

"$DOZE" finetune "$OUT/doze-stories.gguf" "$TRAIN" --budget 0.7 --seed 1 --steps 200 --quiet \
    -o "$OUT/doze-stories.gates.gguf"

"$DOZE" ppl "$OUT/doze-stories.gguf" "$DEV"
"$DOZE" ppl "$OUT/doze-stories.gguf" "$DEV" --budget 0.7 --gates "$OUT/doze-stories.gates.gguf"
"$DOZE" generate "$OUT/doze-stories.gguf" --prompt "Once upon a time" --temp 0 --steps 200
