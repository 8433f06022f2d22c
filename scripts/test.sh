#!/usr/bin/env bash
# The whole test suite: OPA's own tests of the reference policies, then jest (service, route and
# end-to-end tests; the end-to-end ones run on SQLite and on PostgreSQL).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

opa="$(find_opa)"
export OPA_BIN="$opa"
log "type-checking sources and tests"
tsc -p tsconfig.check.json

log "opa test rego/"
"$opa" test rego/ -v | tail -n 3

if [ "${CLAIIM_TEST_SKIP_PG:-}" = 1 ]; then
  log "CLAIIM_TEST_SKIP_PG=1: end-to-end tests run on SQLite only"
else
  CLAIIM_TEST_PG_URL="$(bash scripts/ensure-postgres.sh)"
  [[ "$CLAIIM_TEST_PG_URL" =~ ^postgres(ql)?://[^[:space:]]+$ ]] || die "scripts/ensure-postgres.sh gave no PostgreSQL URL but: $CLAIIM_TEST_PG_URL"
  export CLAIIM_TEST_PG_URL
fi

browser=()
if [ "${CLAIIM_TEST_SKIP_BROWSER:-}" = 1 ]; then
  log "CLAIIM_TEST_SKIP_BROWSER=1: the console's browser tests do not run"
  browser=(--testPathIgnorePatterns /test/browser/)
else
  bash scripts/ensure-chromium.sh
fi

log "jest"
mkdir -p .tools
rm -f .tools/jest-results.json
status=0
jest --ci --json --outputFile=.tools/jest-results.json "${browser[@]}" "$@" || status=$?
# One plain closing line that any CI can read.
if [ -f .tools/jest-results.json ]; then
  node -e 'const r = require("./.tools/jest-results.json");
    console.log(`jest: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests} skipped`);'
else
  echo "jest: no results, it stopped before running the tests (see its error above)"
fi
exit "$status"
