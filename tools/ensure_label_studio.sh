#!/usr/bin/env bash
# Install Label Studio 1.23.2 into its own virtualenv (it has its own pins; it never shares the
# project's environment) and print the path of its `label-studio` command.  Exits non-zero, with
# the reason on stderr, when it cannot: `make test` and the test harness then fail (not skip).
#
# Safe when several runs share the cache folder (two checkouts, parallel CI jobs):
# - the install holds a lock (flock on <cache>/label-studio-1.23.2.lock); a run that waited for the
#   lock finds the finished install and uses it;
# - it installs into a fresh folder <cache>/label-studio-1.23.2.XXXXXX and publishes it by renaming a
#   symlink into place at LS_VENV (a rename is atomic; a virtualenv itself cannot be moved, since its
#   scripts name their own path), so nobody ever sees a half-made install;
# - nothing is removed that another run might be using: only an install that does not work, and
#   leftovers of interrupted installs, both while holding the lock.
set -euo pipefail
VERSION=1.23.2
LS_VENV="${LS_VENV:-$HOME/.cache/llm-prelabel/label-studio-$VERSION}"
CACHE_DIR="$(dirname "$LS_VENV")"
NAME="$(basename "$LS_VENV")"

fail() { echo "tools/ensure_label_studio.sh: $*" >&2; exit 1; }
works() { [ -x "$1/bin/label-studio" ] && timeout 120 "$1/bin/label-studio" --help >/dev/null 2>&1; }

if works "$LS_VENV"; then echo "$LS_VENV/bin/label-studio"; exit 0; fi

mkdir -p "$CACHE_DIR" || fail "cannot create the cache folder $CACHE_DIR"
exec 9>"$CACHE_DIR/$NAME.lock" || fail "cannot open the lock file $CACHE_DIR/$NAME.lock"
if command -v flock >/dev/null 2>&1; then
  flock -w 1800 9 || fail "another install of Label Studio has held $CACHE_DIR/$NAME.lock for 30 minutes"
else
  echo "tools/ensure_label_studio.sh: no flock command; installing without a lock" >&2
fi
if works "$LS_VENV"; then echo "$LS_VENV/bin/label-studio"; exit 0; fi  # made while we waited

# Under the lock nobody else is installing: clear leftovers of interrupted installs.
current="$(readlink "$LS_VENV" 2>/dev/null || true)"
for old in "$CACHE_DIR/$NAME".?????? "$CACHE_DIR/$NAME".??????.*; do
  if [ -e "$old" ] && [ "$(basename "$old")" != "$current" ]; then rm -rf "$old"; fi
done

echo "installing label-studio==$VERSION into $LS_VENV (35 s to 4 min, about 1 GB)" >&2
new="$(mktemp -d "$CACHE_DIR/$NAME.XXXXXX")" || fail "cannot create a folder in $CACHE_DIR"
log="$new.log"
trap 'rm -rf "$new" "$new.link" "$log"' EXIT
python3 -m venv "$new" >"$log" 2>&1 \
  || fail "python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv): $(tail -5 "$log")"
"$new/bin/pip" install -q --disable-pip-version-check "label-studio==$VERSION" >"$log" 2>&1 \
  || fail "pip install label-studio==$VERSION failed: $(grep -v '^WARNING: Location' "$log" | tail -15)"
works "$new" || fail "label-studio==$VERSION installed but \`label-studio --help\` fails"
rm -f "$log"

# Publish: a working install that is a real folder is never here (checked above); a broken one is
# moved aside first (rename, then remove the private name), then the symlink is renamed into place.
if [ -e "$LS_VENV" ] && [ ! -L "$LS_VENV" ]; then
  mv "$LS_VENV" "$new.broken" && rm -rf "$new.broken"
fi
ln -s "$(basename "$new")" "$new.link"
mv -T "$new.link" "$LS_VENV" || fail "cannot publish $new as $LS_VENV"
trap - EXIT
if [ -n "$current" ]; then rm -rf "${CACHE_DIR:?}/$current"; fi  # the broken install it replaced
echo "$LS_VENV/bin/label-studio"
