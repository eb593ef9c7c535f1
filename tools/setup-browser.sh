#!/usr/bin/env bash
# Installs Debian's chromium when it is missing: `explain`'s closure.html is checked in a real headless
# browser (tests/test_explain_html.py). Idempotent; does nothing when chromium is already on PATH.
# Without root or apt-get it says so and returns 0: that test then skips, naming the reason.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-browser: chromium is missing and apt-get is not available: the HTML test will skip" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "setup-browser: chromium is missing and this user cannot apt-get install it: the HTML test will skip" >&2
    exit 0
  fi
fi
echo "setup-browser: installing Debian's chromium (headless check of explain's closure.html)" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends chromium >&2
