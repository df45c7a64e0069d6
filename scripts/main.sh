#!/usr/bin/env bash
# Builds isola and runs its main job with the default store (/var/lib/isola, /run/isola): the seed
# scenario on the built-in busybox image — a detached `ping localhost` container that `isola top`
# lists, whose PID the host sees as the same `ping` process — then its logs, stop and removal.
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
step() { printf '\n$ %s\n' "$*"; }

step isola image builtin
"$isola" image builtin
"$isola" rm -f pinger >/dev/null 2>&1 || true

echo
echo "== process isolation =="
step isola run -d --name pinger --isolation=process busybox ping localhost
"$isola" run -d --name pinger --isolation=process busybox ping localhost
sleep 2
step isola top pinger
"$isola" top pinger
pid=$("$isola" inspect pinger | sed -n 's/^ *"Pid": \([0-9]*\),*/\1/p' | head -n 1)
step "ps -p $pid -o pid=,comm=   # the same process, seen from the host"
ps -p "$pid" -o pid=,comm=
step isola logs --tail 3 pinger
"$isola" logs --tail 3 pinger
step isola stop -t 2 pinger
"$isola" stop -t 2 pinger
step isola rm pinger
"$isola" rm pinger

echo
echo "== VM isolation =="
step isola run -d --name pinger-vm --isolation=vm busybox ping localhost
"$isola" run -d --name pinger-vm --isolation=vm busybox ping localhost || true
