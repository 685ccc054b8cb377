#!/usr/bin/env bash
# Make sure headless Chromium and its chromedriver are installed (the browser tests of Label Studio's
# UI use them through selenium), installing Debian's `chromium` and `chromium-driver` with apt-get
# when missing, and print the chromedriver path.  Exits non-zero, with the reason on stderr, when it
# cannot: `make test` then fails (not skips), like tools/ensure_label_studio.sh.
#
# CHROMIUM / CHROMEDRIVER name other binaries (then nothing is installed).  The install holds a lock
# (flock on $HOME/.cache/llm-prelabel/chromium.lock), so parallel runs install once.
set -euo pipefail
fail() { echo "tools/ensure_chromium.sh: $*" >&2; exit 1; }
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
CHROMEDRIVER="${CHROMEDRIVER:-/usr/bin/chromedriver}"
works() { [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ] && timeout 60 "$CHROMEDRIVER" --version >/dev/null 2>&1; }

if works; then echo "$CHROMEDRIVER"; exit 0; fi
case "$CHROMIUM$CHROMEDRIVER" in
  /usr/bin/chromium/usr/bin/chromedriver) ;;
  *) fail "CHROMIUM=$CHROMIUM / CHROMEDRIVER=$CHROMEDRIVER: not executable (or chromedriver --version fails)";;
esac
command -v apt-get >/dev/null 2>&1 \
  || fail "Chromium and chromedriver are not installed and there is no apt-get: install chromium and chromium-driver"

lock_dir="$HOME/.cache/llm-prelabel"
mkdir -p "$lock_dir" || fail "cannot create $lock_dir"
exec 9>"$lock_dir/chromium.lock" || fail "cannot open the lock file $lock_dir/chromium.lock"
if command -v flock >/dev/null 2>&1; then
  flock -w 1800 9 || fail "another install of Chromium has held $lock_dir/chromium.lock for 30 minutes"
fi
if works; then echo "$CHROMEDRIVER"; exit 0; fi  # installed while we waited

echo "installing chromium and chromium-driver with apt-get (about 300 MB)" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
{ $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver; } \
  >"$log" 2>&1 || fail "apt-get install chromium chromium-driver failed: $(tail -5 "$log")"
works || fail "chromium and chromium-driver installed but $CHROMEDRIVER --version fails"
echo "$CHROMEDRIVER"
