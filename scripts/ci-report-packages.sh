#!/usr/bin/env bash
# Install the Debian packages edgefair's report tests need (idempotent).
#
#   chromium        headless Chromium renders report.html to a screenshot and a DOM
#                   dump (tests/bench/test_report.py); /usr/bin/chromium
#   fonts-dejavu-core  a font for the screenshot's text (Chromium draws boxes without one)
#
# Safe to run again: it installs only what is missing and runs `apt-get update` only then.
set -euo pipefail

PKGS=(chromium fonts-dejavu-core)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "ci-report-packages: need root (or sudo) to install: ${PKGS[*]}" >&2; exit 1
    fi
fi

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    echo "ci-report-packages: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x /usr/bin/chromium ]; then
    echo "ci-report-packages: /usr/bin/chromium missing after install" >&2; exit 1
fi
echo "ci-report-packages: ok (${PKGS[*]})" >&2
