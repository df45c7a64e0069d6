#!/usr/bin/env bash
# Builds isola and runs its main job with the default store (/var/lib/isola, /run/isola): the seed
# scenario on the built-in busybox image, side by side in both isolation modes — a detached
# `ping localhost` container that `isola top` lists; in process isolation the host sees the same
# `ping` process, in VM isolation it sees no `ping`, only the VM monitor `isola-vm-<ID>` — then
# their logs, stop and removal.
# Run as root on Debian 12 with the Rust toolchain installed.
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
fi

./scripts/install-deps.sh
cargo build --release --locked
# VM isolation: the static guest agent next to isola, and the guest kernel (built once, ~8 minutes
# on 2 cores, then cached in /var/cache/isola/kernel).
./scripts/build-agent.sh --profile release >/dev/null
vm/build-kernel.sh >/dev/null
isola=target/release/isola
step() { printf '\n$ %s\n' "$*"; }

step isola image builtin
"$isola" image builtin
"$isola" rm -f pinger pinger-vm >/dev/null 2>&1 || true
inspect_pid() { "$isola" inspect -f '{{.State.Pid}}' "$1"; }

echo
echo "== the same container, side by side: process isolation and VM isolation =="
step isola run -d --name pinger --isolation=process busybox ping localhost
"$isola" run -d --name pinger --isolation=process busybox ping localhost
step isola run -d --name pinger-vm --isolation=vm busybox ping localhost
"$isola" run -d --name pinger-vm --isolation=vm busybox ping localhost
sleep 2

echo
echo "== process isolation: the container's processes are host processes =="
step isola top pinger
"$isola" top pinger
pid=$(inspect_pid pinger)
step "ps -p $pid -o pid=,comm=   # the same PID, seen from the host"
ps -p "$pid" -o pid=,comm=

echo
echo "== VM isolation: the container runs in its own kernel =="
step isola top pinger-vm
"$isola" top pinger-vm
qemu=$(inspect_pid pinger-vm)
step "pgrep -x ping   # host processes named ping: only the process-isolated one ($pid)"
pgrep -x ping
step "ps -p $qemu -o pid=,comm=   # on the host, the VM-isolated container is its VM monitor"
ps -p "$qemu" -o pid=,comm=
step "isola inspect -f '{{.HostConfig.Isolation}} {{.VM.Accelerator}} {{.VM.Boot.TotalMs}} ms to start' pinger-vm"
"$isola" inspect -f '{{.HostConfig.Isolation}} {{.VM.Accelerator}} {{.VM.Boot.TotalMs}} ms to start' pinger-vm

echo
for c in pinger pinger-vm; do
    step isola logs --tail 2 "$c"
    "$isola" logs --tail 2 "$c"
done
step isola stop -t 2 pinger pinger-vm
"$isola" stop -t 2 pinger pinger-vm
step isola rm pinger pinger-vm
"$isola" rm pinger pinger-vm
