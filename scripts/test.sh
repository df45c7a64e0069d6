#!/usr/bin/env bash
# Runs isola's whole test suite: installs the packages the tests use, builds (or finds in the
# cache) the Debian test image and the guest kernel, builds the workspace and runs every test.
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
# VM isolation's guest agent must be static: build it, put it next to isola (the build above left
# cargo's dynamic one there), and name it for the tests, since `cargo test` can put the dynamic one
# back. The guest kernel: vm/build-kernel.sh (about 8 minutes on 2 cores the first time, then
# cached by its config's hash; .ci/run builds it earlier, in the background of its lint steps).
ISOLA_AGENT=$(./scripts/build-agent.sh --profile debug)
export ISOLA_AGENT
vm/build-kernel.sh >/dev/null
cargo test --workspace --locked --no-fail-fast
