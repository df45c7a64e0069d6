#!/usr/bin/env bash
# Runs isola's whole test suite: installs the packages the tests use, builds (or finds in the
# cache) the Debian test image, builds the workspace and runs every test.
# Run as root on Debian 12 with the Rust toolchain installed. With CI set, a test that cannot
# run (missing asset, not root) fails instead of skipping.
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: run as root (the tests unpack devices and mount overlayfs)" >&2
    exit 1
fi

./scripts/install-deps.sh
ISOLA_TEST_DEBIAN_TAR=$(./scripts/test-assets.sh)
export ISOLA_TEST_DEBIAN_TAR

cargo build --workspace --locked
cargo test --workspace --locked --no-fail-fast
