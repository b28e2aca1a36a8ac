#!/bin/sh
# The native build (build/: the doze CLI, C tests, benchmarks) and the wasm
# build (build-wasm/ -> js/dist/doze.wasm) from the same CMakeLists.txt.
# Configures a build tree only when it has none (cmake --build re-runs the
# configuration itself when CMakeLists.txt changes), so a second run costs
# only what changed.
set -eu
cd "$(dirname "$0")/.."
[ -f build/CMakeCache.txt ] || cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2
# Emscripten on Node 20 needs Debian's node modules on NODE_PATH.
export NODE_PATH="${NODE_PATH:-/usr/share/nodejs}"
[ -f build-wasm/CMakeCache.txt ] || emcmake cmake -S . -B build-wasm -DCMAKE_BUILD_TYPE=Release
cmake --build build-wasm -j2
for w in doze.wasm doze-mt.wasm; do [ -f js/dist/$w ] || { echo "build: js/dist/$w was not produced" >&2; exit 1; }; done

# The npm package (js/) ships the default model, its gates and what each
# budget costs (js/models/, a copy: npm pack takes only files under js/).
mkdir -p js/models
for f in doze-stories.gguf doze-stories.gates.gguf doze-stories.gates.ppl.json README.md; do
  cmp -s "models/$f" "js/models/$f" 2>/dev/null || cp -p "models/$f" "js/models/$f"
done
