#!/usr/bin/env bash
# Schema-driven fuzzing of a live CLAIIM with schemathesis, from its own /openapi.json: every
# operation, DELETE included, with an admin key (which the run never revokes), and the decision
# endpoint with an agent token. Fails on any 5xx, any conformance failure (status, content type,
# headers, response schema), any refusal of a request the document calls valid (beyond the
# documented semantic ones, test/fuzz/hooks.py), an error the server logged as unhandled, or a
# Chron chain that no longer verifies afterwards.
#
#   FUZZ_SECONDS     time budget of the whole run (default 300); `make test` runs a short one
#   FUZZ_DATABASE_URL  a PostgreSQL URL to fuzz on (default: a fresh SQLite file)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

seconds="${FUZZ_SECONDS:-300}"
venv="$ROOT/.tools/venv"
bash scripts/python-env.sh

work="$(mktemp -d)"
port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
url="http://127.0.0.1:$port"
export CLAIIM_DATA_DIR="$work/data" CLAIIM_BUNDLE_DIR="$work/bundles" CLAIIM_ARCHIVE_DIR="$work/archives" PORT="$port" LOG_LEVEL=warn
# The fuzzer sends thousands of bad credentials from one address on purpose: rate limits off, so
# that every operation answers for itself (the limits are tested in test/e2e/operations.test.ts).
export CLAIIM_RATE_LIMIT_FAILURES_PER_ADDRESS=0 CLAIIM_RATE_LIMIT_FAILURES_PER_CLIENT=0 CLAIIM_RATE_LIMIT_TOKEN_PER_ADDRESS=0 CLAIIM_RATE_LIMIT_TOKEN_PER_CLIENT=0
if [ -n "${FUZZ_DATABASE_URL:-}" ]; then export DATABASE_URL="$FUZZ_DATABASE_URL"; fi
bash scripts/run.sh > "$work/server.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 150); do
  if curl -fsS "$url/readyz" >/dev/null 2>&1; then break; fi
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; die "CLAIIM did not start"; }
  sleep 0.2
done
curl -fsS "$url/readyz" >/dev/null || die "CLAIIM did not become ready"

admin="$(cat "$work/data/bootstrap-admin.token")"
# Seed an organisation, a human and an agent, so that operations on them are reached.
seed="$(node scripts/fuzz-seed.mjs "$url" "$admin")"
agent_token="$(echo "$seed" | sed -n 's/^agent_token=//p')"
export CLAIIM_FUZZ_KEY_ID="$(echo "$seed" | sed -n 's/^admin_key_id=//p')"
export SCHEMATHESIS_HOOKS=hooks
export PYTHONPATH="$ROOT/test/fuzz"

status=0
st() { (cd test/fuzz && "$venv/bin/schemathesis" run "$url/openapi.json" --checks all --exclude-checks positive_data_acceptance --workers 1 --continue-on-failure --suppress-health-check all --no-color "$@") || status=1; }
agent_paths='^/v1/(decisions|agent/)'
log "fuzzing the agents' operations (decisions, own permissions) as an agent for $((seconds / 4)) s"
st -H "Authorization: Bearer $agent_token" --include-path-regex "$agent_paths" --max-time $((seconds / 4))
log "fuzzing every other operation as an administrator for $((seconds - seconds / 4)) s"
st -H "Authorization: Bearer $admin" --exclude-path-regex "$agent_paths" --max-time $((seconds - seconds / 4))

if grep -q '"unhandled error"\|"level":"error"' "$work/server.log"; then
  log "the server logged errors while being fuzzed:"
  grep '"unhandled error"\|"level":"error"' "$work/server.log" | head -20 >&2
  status=1
fi
verify="$(curl -fsS "$url/v1/chron/verify" -H "Authorization: Bearer $admin")"
if ! echo "$verify" | grep -q '"valid":true'; then
  log "Chron no longer verifies after fuzzing: $(echo "$verify" | head -c 2000)"
  status=1
fi
[ "$status" = 0 ] && log "fuzzing: no server error, no conformance failure, Chron verifies ($(echo "$verify" | sed -n 's/.*"checked":\([0-9]*\).*/\1/p') records)"
exit "$status"
