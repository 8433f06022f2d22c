#!/usr/bin/env bash
# The console's browser tests drive Debian's Chromium (playwright-core downloads no browser here).
# Installs it with apt-get when it is missing, which needs root; says so when it does.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

chromium="${CLAIIM_TEST_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$chromium" ]; then exit 0; fi
[ -z "${CLAIIM_TEST_CHROMIUM:-}" ] || die "CLAIIM_TEST_CHROMIUM=$chromium is not runnable"
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  die "the browser tests need Chromium at /usr/bin/chromium: install Debian's chromium package (as root: apt-get install chromium), set CLAIIM_TEST_CHROMIUM, or run with CLAIIM_TEST_SKIP_BROWSER=1"
fi
log "installing Debian's chromium for the console's browser tests (apt-get install chromium, as root)"
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
[ -x "$chromium" ] || die "apt-get installed chromium, but $chromium is not there"
log "$("$chromium" --version 2>/dev/null | head -n 1)"
