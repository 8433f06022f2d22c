#!/usr/bin/env bash
# The Python SDK's environment: a project-local venv (.tools/venv) with sdk/python installed in
# editable mode and its test dependencies, from PyPI. Quick when nothing changed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
command -v python3 >/dev/null || die "Python 3.9 or later is needed for the Python SDK's tests"
venv=.tools/venv
if [ ! -x "$venv/bin/python" ]; then
  log "creating the Python venv $venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
fi
sum="$(cat sdk/python/pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$venv/.claiim-sdk" 2>/dev/null)" != "$sum" ]; then
  log "installing the Python SDK and its test dependencies into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -e "sdk/python[test]"
  echo "$sum" > "$venv/.claiim-sdk"
fi
