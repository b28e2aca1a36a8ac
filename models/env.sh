# The recipes' shared environment, sourced (POSIX sh) by the make-*.sh
# scripts beside it after their `set -eu`; $0 is the sourcing script, so
# ROOT is the repository whichever folder it runs from. Each setting keeps
# a value given in the environment:
#   DOZE   the doze binary (default build/doze)
#   TEXT   the folder with tinystories-train.txt / tinystories-dev.txt
#          (default ../shared/text)
#   OUT    where the models and logs go (default models/; made if absent)
# and TRAIN / DEV are the two text files in TEXT.
# (SC2034: the variables are for the scripts that source this file.)
# shellcheck shell=sh disable=SC2034
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DOZE=${DOZE:-$ROOT/build/doze}
TEXT=${TEXT:-$ROOT/../shared/text}
OUT=${OUT:-$ROOT/models}
mkdir -p "$OUT"
TRAIN=$TEXT/tinystories-train.txt
DEV=$TEXT/tinystories-dev.txt
