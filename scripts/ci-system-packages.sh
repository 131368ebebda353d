#!/usr/bin/env bash
# Install the Debian packages edgefair's device tests need (idempotent).
#
#   openssh-server  a real sshd the SSH transport tests start on 127.0.0.1
#   openssh-client  ssh, scp, ssh-keygen, ssh-keyscan (the SSH transport itself)
#   qemu-user-static  qemu-aarch64-static for the emulated Raspberry Pi (pi4-emu)
#   procps          ps/pkill-free process inspection used by the tests (pgrep -P)
#   ca-certificates, unzip  fetching and unpacking aarch64 wheels for the pi4-emu sysroot
#   python3-venv    Debian's python3 with venv: the fresh device `bench devices setup` provisions
#
# It also registers the arm64 foreign architecture (older edgefair fetched pi4-emu's arm64
# packages through the host's apt; it now uses a private apt configuration from
# edgefair/devices/pi4-emu.lock.json and needs neither the registration nor root).
# Safe to run again: it installs only what is missing and runs `apt-get update` only then.
set -euo pipefail

PKGS=(openssh-server openssh-client qemu-user-static procps ca-certificates unzip python3-venv)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "ci-system-packages: need root (or sudo) to install: ${PKGS[*]}" >&2; exit 1
    fi
fi

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

need_update=0
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $SUDO dpkg --add-architecture arm64
    need_update=1
fi
if [ "${#missing[@]}" -gt 0 ]; then
    need_update=1
fi

if [ "$need_update" -eq 1 ]; then
    $SUDO apt-get update -qq
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "ci-system-packages: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Sanity check: the binaries the tests look for.
for b in /usr/sbin/sshd /usr/bin/ssh /usr/bin/scp /usr/bin/ssh-keygen /usr/bin/qemu-aarch64-static; do
    if [ ! -x "$b" ]; then echo "ci-system-packages: $b missing after install" >&2; exit 1; fi
done
echo "ci-system-packages: ok (${PKGS[*]}; arm64 architecture registered)" >&2
