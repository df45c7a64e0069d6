#!/usr/bin/env bash
# Installs the Debian packages isola's build, main job and tests need.
# Idempotent: when everything is installed it prints nothing and touches nothing.
# Needs root (or passwordless sudo) on Debian 12.
set -euo pipefail

packages=(
    build-essential   # C compiler for the bundled SQLite and zstd
    ca-certificates
    attr              # getfattr: tests read overlayfs xattrs
    busybox-static    # the built-in busybox image
    tini              # --init: tini-static is bind-mounted into containers as their PID 1
    tmux              # tests: interactive -it sessions
    qemu-system-x86   # VM isolation: the VMM
    cpio              # VM isolation: the guest initramfs
    debootstrap       # the Debian test image (scripts/test-assets.sh)
    podman
    skopeo            # tests: other tools read isola's archives
    umoci
    uidmap
    zstd
    pigz
)

missing=()
for p in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    if [ "$status" != "installed" ]; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || {
        echo "install-deps: run as root to install: ${missing[*]}" >&2
        exit 1
    }
    sudo=(sudo)
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! { "${sudo[@]}" apt-get update -q && "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"; } </dev/null >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "install-deps: apt-get failed (output above)" >&2
    exit 1
fi
