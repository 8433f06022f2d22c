#!/usr/bin/env bash
# Builds an earlier commit of CLAIIM beside this checkout, for benchmarks that compare builds in one
# run (bench/writers.ts): `bash scripts/bench-before.sh [REV]` (default: the commit before the
# locked Chron append) prints the folder to pass as BENCH_BEFORE_ROOT. It shares this checkout's
# node_modules (so the SDK too) and .tools (OPA, its builtins); nothing
# in this checkout changes. Its Prisma clients are generated from its own schema: this checkout's
# would name columns its migrations never made.
set -euo pipefail
cd "$(dirname "$0")/.."
rev="$(git rev-parse "${1:-051844d}")"
out="${TMPDIR:-/tmp}/claiim-before-${rev:0:12}"
if [ ! -f "$out/dist/src/main.js" ]; then
  rm -rf "$out" && mkdir -p "$out"
  git archive "$rev" | tar -x -C "$out"
  ln -s "$PWD/node_modules" "$out/node_modules"
  ln -s "$PWD/.tools" "$out/.tools"
  (cd "$out" && DATABASE_URL="file:./data/claiim.db" node_modules/.bin/prisma generate --schema prisma/sqlite/schema.prisma >/dev/null \
    && DATABASE_URL="postgresql://localhost/claiim" node_modules/.bin/prisma generate --schema prisma/postgresql/schema.prisma >/dev/null) >&2
  (cd "$out" && node_modules/.bin/tsc -p . >&2)
fi
echo "$out"
