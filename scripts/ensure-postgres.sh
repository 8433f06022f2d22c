#!/usr/bin/env bash
# Prints a PostgreSQL URL for the tests, starting the local cluster and creating a test role first
# when needed. CLAIIM_TEST_PG_URL, when set, is used as it is.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if [ -n "${CLAIIM_TEST_PG_URL:-}" ]; then echo "$CLAIIM_TEST_PG_URL"; exit 0; fi
command -v pg_lsclusters >/dev/null || die "PostgreSQL is not installed: install it (apt-get install postgresql), or set CLAIIM_TEST_PG_URL to a server whose role may create databases"
[ "$(id -u)" = 0 ] || die "starting the local PostgreSQL needs root; or set CLAIIM_TEST_PG_URL"

read -r version cluster port status _ < <(pg_lsclusters -h | head -1) || die "no PostgreSQL cluster exists (pg_createcluster)"
if [ "$status" != "online" ]; then
  log "starting PostgreSQL $version/$cluster"
  # WARNING: this script's standard output is the URL and nothing else; pg_ctlcluster can print
  # (a removed stale pid file, recovery notes), so its output goes to standard error.
  pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start >&2
fi
# Crash recovery after an unclean stop can take a while.
ready=0
for _ in $(seq 1 300); do
  if su postgres -c "pg_isready -q -p $port" >&2; then ready=1; break; fi
  sleep 0.2
done
[ "$ready" = 1 ] || die "PostgreSQL $version/$cluster did not accept connections within 60 s (see /var/log/postgresql/)"
su postgres -c "psql -q -p $port -v ON_ERROR_STOP=1" >/dev/null <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'claiim_test') THEN
    CREATE ROLE claiim_test LOGIN CREATEDB PASSWORD 'claiim_test';
  END IF;
END $$;
-- CREATEROLE: the deployment test makes the limited role CLAIIM runs as (scripts/postgres-roles.mjs).
ALTER ROLE claiim_test CREATEROLE;
SELECT 'CREATE DATABASE claiim_test OWNER claiim_test' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'claiim_test')\gexec
SQL
echo "postgresql://claiim_test:claiim_test@127.0.0.1:$port/claiim_test"
