#!/usr/bin/env bash
# Migrates a PostgreSQL database as its owner (DATABASE_URL), then grants the limited role CLAIIM
# runs as (CLAIIM_APP_ROLE, CLAIIM_APP_PASSWORD) what it needs, and no more. docker-compose.yml runs
# this once before CLAIIM starts; run it the same way after an upgrade.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
log "applying database migrations as the owner"
prisma migrate deploy >/dev/null
node scripts/postgres-roles.mjs
