#!/usr/bin/env bash
# Some tests drive a real program from Debian: Chromium for the console (playwright-core downloads
# no browser here), HAProxy in front of replicas as docker-compose.yml runs it. This installs the
# package with apt-get when the program is missing, which needs root, and says so when it does.
# Usage: ensure-debian-package.sh <package> <program path> <setting that names another> <what needs it>
set -euo pipefail
source "$(dirname "$0")/lib.sh"

package="$1" program="$2" setting="$3" purpose="$4"
if [ -x "$program" ]; then exit 0; fi
[ -z "${!setting:-}" ] || die "$setting=$program is not runnable"
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  die "$purpose need $program: install Debian's $package package (as root: apt-get install $package) or set $setting"
fi
log "installing Debian's $package for $purpose (apt-get install $package, as root)"
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >&2
[ -x "$program" ] || die "apt-get installed $package, but $program is not there"
log "$("$program" --version 2>/dev/null | head -n 1 || "$program" -v 2>/dev/null | head -n 1)"
