#!/usr/bin/env bash
# Builds isola and runs its main job with the default store (/var/lib/isola, /run/isola):
# creates the built-in busybox image, lists the images and inspects busybox.
# Run as root on Debian 12 with the Rust toolchain installed.
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
fi

./scripts/install-deps.sh
cargo build --release --locked
isola=target/release/isola

set -x
"$isola" image builtin
"$isola" images
"$isola" image inspect busybox
