# Shared by the scripts: where things are, and how to find the OPA CLI.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OPA_VERSION="1.22.3"
export PATH="$ROOT/node_modules/.bin:$PATH"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

opa_version_of() { "$1" version 2>/dev/null | sed -n 's/^Version: //p'; }

# Prints the OPA CLI to use: OPA_BIN if set, else the project's own build, else an `opa` of the
# pinned version on the PATH. Prints nothing when none is usable.
find_opa() {
  if [ -n "${OPA_BIN:-}" ]; then echo "$OPA_BIN"; return; fi
  if [ -x "$ROOT/.tools/bin/opa" ] && [ "$(opa_version_of "$ROOT/.tools/bin/opa")" = "$OPA_VERSION" ]; then
    echo "$ROOT/.tools/bin/opa"; return
  fi
  if command -v opa >/dev/null && [ "$(opa_version_of "$(command -v opa)")" = "$OPA_VERSION" ]; then command -v opa; fi
}
