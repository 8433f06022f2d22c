#!/usr/bin/env bash
# Applies migrations, then serves CLAIIM in the foreground.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
data_dir="${CLAIIM_DATA_DIR:-data}"
mkdir -p "$data_dir"
export DATABASE_URL="${DATABASE_URL:-file:$(cd "$data_dir" && pwd)/claiim.db}"
opa="$(find_opa)"
export OPA_BIN="${OPA_BIN:-$opa}"
log "applying database migrations"
prisma migrate deploy >/dev/null
exec node dist/src/main.js
