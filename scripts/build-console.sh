#!/usr/bin/env bash
# Builds the web console (console/) into dist/console, which CLAIIM serves at /console.
# Skipped when neither its sources nor the npm packages changed since the last build.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

stamp_file="dist/console/.claiim-build"
stamp="$( (find console -type f -print0 | sort -z | xargs -0 sha256sum; sha256sum package-lock.json) | sha256sum | cut -d' ' -f1)"
if [ -f dist/console/index.html ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
log "building the console"
tsc -p console/tsconfig.json
vite build --config console/vite.config.mts
echo "$stamp" > "$stamp_file"
