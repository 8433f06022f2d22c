#!/usr/bin/env bash
# The project's Python environment: a project-local venv (.tools/venv), from PyPI, with sdk/python
# installed in editable mode with its test dependencies, the fuzzer (test/fuzz/requirements.txt) and
# the Python tools of the jest tests (test/requirements.txt).
# Quick when nothing changed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
command -v python3 >/dev/null || die "Python 3.9 or later is needed for the Python SDK's tests"
venv=.tools/venv
if [ ! -x "$venv/bin/python" ]; then
  log "creating the Python venv $venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
fi
sum="$(cat sdk/python/pyproject.toml test/fuzz/requirements.txt test/requirements.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$venv/.claiim-sdk" 2>/dev/null)" != "$sum" ]; then
  log "installing the Python SDK, its test dependencies, schemathesis and the tests' Python tools into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -e "sdk/python[test]" -r test/fuzz/requirements.txt -r test/requirements.txt
  echo "$sum" > "$venv/.claiim-sdk"
fi
