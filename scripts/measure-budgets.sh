#!/bin/sh
# Measures what each budget costs the default model with its gate file:
# perplexity on the held-out TinyStories dev text at b = 1.0, 0.9, ..., 0.1,
# and the compute achieved. Writes models/doze-stories.gates.ppl.json, which
# the web demo shows beside its budget slider.
#   sh scripts/measure-budgets.sh [TEXT]   (default ../shared/text/tinystories-dev.txt; ~1 min)
set -eu
cd "$(dirname "$0")/.."
TEXT="${1:-../shared/text/tinystories-dev.txt}"
MODEL=models/doze-stories.gguf
GATES=models/doze-stories.gates.gguf
OUT=models/doze-stories.gates.ppl.json
[ -x build/doze ] || sh scripts/build.sh
rows=""
for b in 1.0 0.9 0.8 0.7 0.6 0.5 0.4 0.3 0.2 0.1; do
  line="$(build/doze ppl "$MODEL" "$TEXT" --budget "$b" --gates "$GATES")"
  echo "b=$b: $line" >&2
  ppl="$(echo "$line" | sed -n 's/^ppl \([0-9.]*\) .*/\1/p')"
  compute="$(echo "$line" | sed -n 's/.* compute \([0-9.]*\) .*/\1/p')"
  [ -n "$compute" ] || compute=1
  tokens="$(echo "$line" | sed -n 's/.* tokens \([0-9]*\) .*/\1/p')"
  rows="$rows${rows:+,
}    { \"budget\": $b, \"compute\": $compute, \"ppl\": $ppl }"
done
cat > "$OUT" <<JSON
{
  "model": "doze-stories.gguf",
  "gates": "doze-stories.gates.gguf",
  "text": "$(basename "$TEXT")",
  "tokens": $tokens,
  "command": "doze ppl $MODEL $(basename "$TEXT") --budget B --gates $GATES",
  "points": [
$rows
  ]
}
JSON
echo "wrote $OUT" >&2
