#!/usr/bin/env bash
# Installs what Doze needs and is missing, then builds: the first half of
# `npm run demo`, all of `npm run setup`, and the start of .ci/run.
#
#   1. Debian packages (the compilers, Emscripten, SIMDe, Chromium for the
#      browser tests), installed with apt-get when running as root or with
#      sudo; otherwise the missing ones are named and the script stops.
#   2. The npm dev dependencies (playwright-core, typescript, vite, the
#      llama.cpp oracle), unless node_modules already matches the lock file.
#   3. The native build (build/: CLI, C tests) and the wasm build
#      (js/dist/doze.wasm), incrementally.
#
# Any failure stops the script with a non-zero exit: nothing after it (the
# demo server, the tests) runs on a half-made setup.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian 12 package names. Keep one per word; .ci/run and the clean-clone
# check use this same script, so this is the only list.
APT_PACKAGES="cmake gcc clang libclang-rt-14-dev emscripten libsimde-dev chromium clang-16 lld-16 unicode-data"

say() { echo "setup: $*"; }
fail() { echo "setup: error: $*" >&2; exit 1; }

# --- 1. system packages ------------------------------------------------------
if command -v dpkg >/dev/null 2>&1; then
  need=""
  for pkg in $APT_PACKAGES; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
  done
  # a CI image may start without node (a user running `npm run ...` has it)
  command -v node >/dev/null 2>&1 || need="$need nodejs npm"
  if [ -n "$need" ]; then
    SUDO=""
    if [ "$(id -u)" != "0" ]; then
      command -v sudo >/dev/null 2>&1 || fail "missing Debian packages:$need. Install them as root: apt-get install -y$need"
      SUDO="sudo"
    fi
    say "installing Debian packages:$need"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -y || fail "apt-get update failed"
    # shellcheck disable=SC2086
    $SUDO apt-get install -y --no-install-recommends $need || fail "apt-get install failed for:$need"
  fi
else
  say "no dpkg (not Debian): checking the tools instead of installing them"
fi
for tool in cmake cc emcmake; do
  command -v "$tool" >/dev/null 2>&1 || fail "'$tool' not found (Debian packages: $APT_PACKAGES)"
done
CHROMIUM="${DOZE_CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] || fail "Chromium not found at $CHROMIUM (Debian package chromium, or set DOZE_CHROMIUM)"

# --- 2. npm dev dependencies ---------------------------------------------------
# npm writes node_modules/.package-lock.json on every install: newer than the
# lock file and package.json means nothing changed since.
stamp=node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ package.json -nt "$stamp" ]; then
  say "installing npm dev dependencies"
  # --omit=optional: node-llama-cpp's GPU builds are optional and large; the
  # one binary each tool needs is a direct devDependency. (npm ci refuses this
  # lock: some platforms' optional packages are absent from the registry.)
  npm install --omit=optional --no-audit --no-fund --prefer-offline || fail "npm install failed"
fi
node scripts/check-deps.mjs || fail "npm dev dependencies are incomplete (see above)"

# --- 3. build -----------------------------------------------------------------
sh scripts/build.sh || fail "the build failed (see above)"
say "ready"
