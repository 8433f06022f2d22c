#!/usr/bin/env bash
# Installs what CLAIIM needs and is missing. Idempotent and quick when nothing changed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null) || die "Node.js 20 is required"
[ "$node_major" -ge 20 ] || die "Node.js 20 or later is required (found $(node --version))"

lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ "$(cat node_modules/.claiim-lock 2>/dev/null)" != "$lock_sum" ]; then
  # npm ci is silent while it works; say what it does, and show the native builds as they run.
  log "installing npm packages with npm ci (the first time takes a few minutes: it downloads about 1,000 packages and compiles better-sqlite3 for this Node.js)"
  npm ci --no-audit --no-fund --foreground-scripts
  echo "$lock_sum" > node_modules/.claiim-lock
fi

if [ -z "$(find_opa)" ]; then
  if [ -n "${OPA_BIN:-}" ]; then die "OPA_BIN=$OPA_BIN is not runnable"; fi
  command -v go >/dev/null || die "the OPA CLI $OPA_VERSION is missing and Go is not installed to build it; install Go or set OPA_BIN"
  log "building the OPA CLI $OPA_VERSION into .tools/bin (first time only; takes a few minutes)"
  GOBIN="$ROOT/.tools/bin" GOFLAGS=-mod=mod go install "github.com/open-policy-agent/opa@v$OPA_VERSION"
fi
opa="$(find_opa)"
[ -n "$opa" ] || die "no usable OPA CLI"
if [ -n "${OPA_BIN:-}" ] && [ "$(opa_version_of "$opa")" != "$OPA_VERSION" ]; then
  log "warning: OPA_BIN is OPA $(opa_version_of "$opa"); CLAIIM is tested with $OPA_VERSION"
fi

# OPA's own builtin implementations, compiled to WebAssembly (src/policy/runtime/reference.ts):
# CLAIIM evaluates the builtins that its TypeScript does not implement with them.
ref_src="src/policy/runtime/reference"
ref_out=".tools/opa-builtins.wasm"
ref_sum="$(cat "$ref_src/main.go" "$ref_src/go.mod" "$ref_src/go.sum" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$ref_out" ] || [ "$(cat .tools/opa-builtins.sum 2>/dev/null)" != "$ref_sum" ]; then
  if command -v go >/dev/null; then
    log "building OPA's builtin implementations for WebAssembly into $ref_out (the first time takes a minute or two)"
    mkdir -p .tools
    (cd "$ref_src" && GOOS=wasip1 GOARCH=wasm GOFLAGS=-mod=mod go build -buildmode=c-shared -trimpath -ldflags="-s -w" -o "$ROOT/$ref_out.tmp" .)
    mv "$ref_out.tmp" "$ref_out"
    rm -f .tools/opa-builtins.json
    echo "$ref_sum" > .tools/opa-builtins.sum
  else
    log "warning: Go is not installed, so $ref_out is not built: policies may use only the builtins CLAIIM implements itself"
  fi
fi

node scripts/prisma-schemas.mjs --check
stamp=".tools/prisma-generated"
if [ ! -f "$stamp" ] || [ prisma/models.prisma -nt "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ ! -d src/generated ]; then
  log "generating Prisma clients"
  DATABASE_URL="file:./data/claiim.db" prisma generate --schema prisma/sqlite/schema.prisma >/dev/null
  DATABASE_URL="postgresql://localhost/claiim" prisma generate --schema prisma/postgresql/schema.prisma >/dev/null
  mkdir -p .tools && touch "$stamp"
fi

# TypeScript is compiled only when a source, a tsconfig or the packages changed since the last
# compile: a second `make run` starts in seconds. The stamp is the checksum of all of them.
ts_stamp_file="dist/.claiim-compiled"
ts_stamp="$( (find src bench sdk/typescript/src -type f -name '*.ts' -print0 | sort -z | xargs -0 sha256sum; sha256sum tsconfig.json sdk/typescript/tsconfig.json package-lock.json) | sha256sum | cut -d' ' -f1)"
if [ ! -f dist/src/main.js ] || [ "$(cat "$ts_stamp_file" 2>/dev/null)" != "$ts_stamp" ]; then
  log "compiling TypeScript"
  # The SDK first: CLAIIM's own code (the MCP gateway) and the tests use it as the package @claiim/sdk.
  tsc -p sdk/typescript
  tsc -p .
  echo "$ts_stamp" > "$ts_stamp_file"
fi
# The list of builtins the module implements, read from it once (it takes a fraction of a second).
[ -f "$ref_out" ] && node -e 'require("./dist/src/policy/runtime/capabilities").referenceNames()'
true
bash scripts/build-console.sh
