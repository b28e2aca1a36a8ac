#!/bin/sh
# Makes Doze's default model from the TinyStories text, with the seed:
#   models/doze-stories.vocab.gguf   the BPE vocabulary (doze vocab)
#   models/doze-stories.gguf         the model: trained dense (doze train), then
#                                    its weights and gates together (doze finetune --joint)
#   models/doze-stories.gates.gguf   its gates, from that joint fine-tuning
#   models/doze-stories.joint.log    the joint fine-tuning's output
# then scores it on the dev text (doze ppl) and prints a sample. The dense
# phase's model and gates stay in WORK (doze-stories.dense*.gguf).
#
#   npm run make-model            (after npm run build:native)
#
# Environment: DOZE (the doze binary, default build/doze), TEXT (the folder
# with tinystories-train.txt / tinystories-dev.txt, default ../shared/text),
# OUT (default models/), WORK (checkpoints and the dense phase, default
# build/), THREADS (the joint phase's, default 2). Training is deterministic
# for the seed whatever the thread count.
set -eu
. "$(dirname "$0")/env.sh"
WORK=${WORK:-$ROOT/build}
THREADS=${THREADS:-2}
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
    --name doze-stories -o "$WORK/doze-stories.dense.gguf"

# gates for the dense model (routers only), the joint phase's starting point
"$DOZE" finetune "$WORK/doze-stories.dense.gguf" "$TRAIN" --budget 0.7 --seed 1 --steps 200 --quiet \
    -o "$WORK/doze-stories.dense.gates.gguf"

# the model learns to doze: weights and gates together, each window at its
# own budget in 0.4..1 (a fifth dense), distilled from the dense model
"$DOZE" finetune "$WORK/doze-stories.dense.gguf" "$TRAIN" --joint --gates "$WORK/doze-stories.dense.gates.gguf" \
    --budget-range 0.4:1 --dense-fraction 0.2 --weight-lr 3e-4 --weight-lr-min 3e-5 --weight-warmup 20 \
    --noise-end 0 --steps 1000 --ctx 256 --batch 8 --threads "$THREADS" --seed 1 \
    --model-out "$OUT/doze-stories.gguf" -o "$OUT/doze-stories.gates.gguf" \
    > "$OUT/doze-stories.joint.log" 2>&1 || { cat "$OUT/doze-stories.joint.log"; exit 1; }
tail -n 3 "$OUT/doze-stories.joint.log"

"$DOZE" ppl "$OUT/doze-stories.gguf" "$DEV"
for b in 0.7 0.5; do "$DOZE" ppl "$OUT/doze-stories.gguf" "$DEV" --budget $b --gates "$OUT/doze-stories.gates.gguf"; done
"$DOZE" generate "$OUT/doze-stories.gguf" --prompt "Once upon a time" --temp 0 --steps 200
