#!/usr/bin/env bash
# Proves the README's quick start: clones this repository (its committed
# HEAD) into a temporary folder and runs the two commands of the README's
# quick-start block verbatim there — the first (npm run demo) must end up
# serving a page that can run models, the second (npm test) must pass.
# By hand, before pushing a change to the setup (CI starts from a clean
# checkout already): DOZE_CLEAN_CLONE_TEST=1 bash scripts/clean-clone-check.sh
# (it builds everything from scratch: about 10-15 minutes on 2 cores).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"

if [ "${DOZE_CLEAN_CLONE_TEST:-}" != "1" ]; then
  echo "clean-clone: skipped (set DOZE_CLEAN_CLONE_TEST=1 to run it)"
  exit 0
fi

# The commands: the lines of the first ```sh block after <!-- quick-start -->,
# comments stripped.
mapfile -t cmds < <(awk '
  /<!-- quick-start -->/ { armed = 1; next }
  armed && /^```sh/ { inblock = 1; next }
  inblock && /^```/ { exit }
  inblock { sub(/[ \t]*#.*/, ""); if ($0 != "") print }
' "$here/README.md")
[ "${#cmds[@]}" -eq 2 ] || { echo "clean-clone: expected 2 quick-start commands in README.md, found ${#cmds[@]}" >&2; exit 1; }
echo "clean-clone: commands: ${cmds[0]} | ${cmds[1]}"

tmp="$(mktemp -d /tmp/doze-clean-clone.XXXXXX)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill -- "-$server" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

git clone --quiet "$here" "$tmp/doze"
cd "$tmp/doze"
# a fresh clone has no reference data beside it (../shared): those tests skip

# 1. the demo: runs in its own process group until it prints its URL
log="$tmp/demo.log"
setsid bash -c "${cmds[0]}" >"$log" 2>&1 &
server=$!
url=""
for _ in $(seq 1 2400); do   # up to 20 minutes: it installs and builds first
  url="$(sed -n 's/^Doze web demo: \(http[^ ]*\).*/\1/p' "$log" | head -1)"
  [ -n "$url" ] && break
  if ! kill -0 "$server" 2>/dev/null; then
    cat "$log" >&2
    echo "clean-clone: '${cmds[0]}' exited before serving" >&2
    exit 1
  fi
  sleep 0.5
done
[ -n "$url" ] || { cat "$log" >&2; echo "clean-clone: no URL after 20 minutes" >&2; exit 1; }
tail -3 "$log"
# node's fetch, not curl: a fresh machine has git, node and npm only
node -e '
  const base = process.argv[1];
  (async () => {
    for (const p of ["", "js/dist/doze.wasm", "js/src/worker.js", "models/doze-stories.gguf"]) {
      const r = await fetch(base + p);
      if (r.status !== 200) throw new Error(`GET ${base + p} -> ${r.status}`);
      await r.arrayBuffer();
    }
    const c = await (await fetch(base + "config.json")).json();
    if (c.defaultModel !== "models/doze-stories.gguf") throw new Error("the demo does not offer the default model");
  })().catch((e) => { console.error(`clean-clone: ${e.message}`); process.exit(1); });
' "$url"
kill -- "-$server"
wait "$server" 2>/dev/null || true
server=""
echo "clean-clone: '${cmds[0]}' served $url"

# 2. the tests
bash -c "${cmds[1]}"
echo "clean-clone: '${cmds[1]}' passed in a fresh clone"
