#!/usr/bin/env bash
# The whole test suite: OPA's own tests of the reference policies, then jest (service, route and
# end-to-end tests; the end-to-end ones run on SQLite and on PostgreSQL), then pytest for the
# Python SDK against a real CLAIIM. With jest arguments (a file, a pattern), pytest is skipped
# unless CLAIIM_TEST_PYTHON_SDK=1.
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

# The Python examples (test/e2e/examples.test.ts) and the Python SDK's tests run in this venv.
bash scripts/python-env.sh
export CLAIIM_TEST_PYTHON="$ROOT/.tools/venv/bin/python"
browser=()
if [ "${CLAIIM_TEST_SKIP_BROWSER:-}" = 1 ]; then
  log "CLAIIM_TEST_SKIP_BROWSER=1: the console's browser tests do not run"
  browser=(--testPathIgnorePatterns=/test/browser/)
else
  bash scripts/ensure-debian-package.sh chromium "${CLAIIM_TEST_CHROMIUM:-/usr/bin/chromium}" CLAIIM_TEST_CHROMIUM "the console's browser tests (or CLAIIM_TEST_SKIP_BROWSER=1)"
fi
if [ "${CLAIIM_TEST_SKIP_PG:-}" != 1 ]; then
  # docker-compose.yml's replicas behind HAProxy, run without Docker (test/e2e/load-balancer.test.ts).
  bash scripts/ensure-debian-package.sh haproxy "${CLAIIM_TEST_HAPROXY:-/usr/sbin/haproxy}" CLAIIM_TEST_HAPROXY "the load balancer's tests"
fi

log "jest"
mkdir -p .tools
rm -f .tools/jest-results.json
status=0
# The ignore pattern goes last: an array option takes the jest arguments after it as more patterns.
jest --ci --json --outputFile=.tools/jest-results.json "$@" "${browser[@]}" || status=$?
# One plain closing line that any CI can read.
if [ -f .tools/jest-results.json ]; then
  node -e 'const r = require("./.tools/jest-results.json");
    console.log(`jest: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests} skipped`);'
else
  echo "jest: no results, it stopped before running the tests (see its error above)"
fi

if [ "$#" -eq 0 ] || [ "${CLAIIM_TEST_PYTHON_SDK:-}" = 1 ]; then
  log "pytest sdk/python (the Python SDK against a real CLAIIM)"
  rm -f .tools/pytest-results.xml
  (cd sdk/python && "$CLAIIM_TEST_PYTHON" -m pytest -q -p no:cacheprovider --junitxml="$ROOT/.tools/pytest-results.xml") || status=1
  # One plain closing line for both runners.
  node -e 'const fs = require("fs");
    const j = fs.existsSync(".tools/jest-results.json") ? require("./.tools/jest-results.json") : { numPassedTests: 0, numFailedTests: 0, numPendingTests: 0 };
    const x = fs.existsSync(".tools/pytest-results.xml") ? fs.readFileSync(".tools/pytest-results.xml", "utf8") : "";
    const attr = (n) => Number((new RegExp(`<testsuite [^>]*\\b${n}="(\\d+)"`).exec(x) || [0, 0])[1]);
    const pyFailed = attr("failures") + attr("errors"), pySkipped = attr("skipped"), pyPassed = attr("tests") - pyFailed - pySkipped;
    if (!x) console.log("pytest: no results, it stopped before running the tests (see its error above)");
    console.log(`all: ${j.numPassedTests + pyPassed} passed, ${j.numFailedTests + pyFailed} failed, ${j.numPendingTests + pySkipped} skipped`);'
fi
# A short schema-driven fuzzing run of a live server (`make fuzz` runs a longer one).
if [ "$status" = 0 ] && [ "$#" = 0 ]; then
  FUZZ_SECONDS="${CLAIIM_TEST_FUZZ_SECONDS:-60}" bash scripts/fuzz.sh || status=$?
fi
exit "$status"
