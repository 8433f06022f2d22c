#!/usr/bin/env bash
# The test suite on the current Node.js LTS line (24), next to the machine's own Node.js: the
# official binary and headers from the npm registry's `node` package go to .tools/node-lts, and
# better-sqlite3, the one native module CLAIIM loads, is compiled for that Node.js there too, so the
# project's node_modules stays built for the default Node.js. Arguments go to scripts/test.sh (jest).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
# WARNING: pinned to the container's release (Dockerfile), 24.18.0. From 24.19 on, node::ObjectWrap
# (compiled into better-sqlite3 12 from Node's headers) aborts the process (SIGABRT in
# Statement::~Statement) when the garbage collector frees a statement outside a JavaScript context:
# jest workers die on SQLite. better-sqlite3 13 (Node-API) has no such problem but does not run on
# Node.js 20, which CLAIIM still supports; a later 24.x comes with that move (docs/operations.md,
# "Node.js versions").
LTS_VERSION="${CLAIIM_LTS_NODE_VERSION:-24.18.0}"
lts=".tools/node-lts"
home="$lts/node_modules/node/node_modules/node-$(node -p 'process.platform')-$(node -p 'process.arch')"

if [ "$("$home/bin/node" --version 2>/dev/null)" != "v$LTS_VERSION" ]; then
  log "installing Node.js $LTS_VERSION from the npm registry into $lts"
  mkdir -p "$lts"
  echo '{"private": true}' > "$lts/package.json"
  (cd "$lts" && npm install --no-audit --no-fund --no-save "node@$LTS_VERSION")
fi
[ -x "$home/bin/node" ] && [ -f "$home/include/node/node.h" ] || die "the node package gave no binary and headers in $home"

# better-sqlite3 at the project's version, compiled against the LTS headers (no download of them).
want="$(node -p 'require("./node_modules/better-sqlite3/package.json").version')"
mods="$lts/modules"
stamp="$mods/.built-for"
if [ "$(cat "$stamp" 2>/dev/null)" != "$LTS_VERSION $want" ]; then
  log "compiling better-sqlite3 $want for Node.js $LTS_VERSION into $mods (a few minutes the first time)"
  # Afresh: npm would keep a copy of the same version built for another Node.js (ObjectWrap's
  # code is compiled in from the headers, so even the same ABI is not the same build).
  rm -rf "$mods"
  mkdir -p "$mods"
  echo '{"private": true}' > "$mods/package.json"
  (cd "$mods" && PATH="$ROOT/$home/bin:$PATH" npm_config_nodedir="$ROOT/$home" npm install --no-audit --no-fund --foreground-scripts --build-from-source "better-sqlite3@$want")
  echo "$LTS_VERSION $want" > "$stamp"
fi

export CLAIIM_LTS_MODULES="$ROOT/$mods/node_modules"
# Every node started from here on (jest, its workers, the CLAIIM processes and CLIs the tests
# start, Prisma's CLI) is the LTS one, and loads its native modules from the LTS build.
export PATH="$ROOT/$home/bin:$PATH"
export NODE_OPTIONS="--require $ROOT/scripts/lts-modules.cjs ${NODE_OPTIONS:-}"
log "node $(node --version): $(command -v node)"
exec bash scripts/test.sh "$@"
