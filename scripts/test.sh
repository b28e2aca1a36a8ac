#!/bin/sh
# `npm test`: the whole suite — C tests (ctest), then the JS and browser tests
# (node --test). Builds first (incrementally), and fails rather than skips
# when a dev dependency, a build tool or Chromium is missing: a suite that
# passes by skipping its browser half proves nothing. Tests that need the
# reference data in ../shared (not part of the repository) still skip
# where it is absent.
set -eu
cd "$(dirname "$0")/.."

fail() { echo "test: error: $*" >&2; echo "test: run 'npm run setup' (installs what is missing and builds)" >&2; exit 1; }

node scripts/check-deps.mjs || fail "npm dev dependencies missing"
for tool in cmake emcmake; do
  command -v "$tool" >/dev/null 2>&1 || fail "'$tool' not found"
done
CHROMIUM="${DOZE_CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] || fail "Chromium not found at $CHROMIUM (Debian package chromium, or set DOZE_CHROMIUM)"

sh scripts/build.sh || fail "the build failed"
ctest --test-dir build --output-on-failure
node --test tests/js/ tests/browser/
