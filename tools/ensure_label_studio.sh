#!/usr/bin/env bash
# Install Label Studio 1.23.2 into its own virtualenv (it has its own pins; it never
# shares the project's environment).  Prints the path of its `label-studio` command.
set -euo pipefail
LS_VENV="${LS_VENV:-$HOME/.cache/llm-prelabel/label-studio-1.23.2}"
if [ ! -x "$LS_VENV/bin/label-studio" ]; then
  echo "installing label-studio==1.23.2 into $LS_VENV (about 35 s, 1 GB)" >&2
  rm -rf "$LS_VENV"; mkdir -p "$(dirname "$LS_VENV")"
  python3 -m venv "$LS_VENV"
  "$LS_VENV/bin/pip" install -q --disable-pip-version-check label-studio==1.23.2 2>&1 | grep -v '^WARNING: Location' >&2 || true
  "$LS_VENV/bin/label-studio" --help >/dev/null 2>&1 || { echo "label-studio install failed" >&2; exit 1; }
fi
echo "$LS_VENV/bin/label-studio"
