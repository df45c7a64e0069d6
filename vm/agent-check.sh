#!/usr/bin/env bash
# Boot the guest kernel with the isola-agent initramfs N times under QEMU microvm (TCG) and
# talk to the agent over virtio-serial: wait for Hello, Ping, Shutdown; check QEMU ends itself.
#
#   vm/agent-check.sh [-n BOOTS] [-t SECONDS] [--kernel-dir DIR] [--initrd FILE]
#
#   -n BOOTS          boots to run (default 5)
#   -t SECONDS        deadline for the socket + Hello per boot (default 10); past it the boot
#                     is a hang, QEMU is killed
#   --kernel-dir DIR  a directory holding vmlinux (default: what vm/build-kernel.sh prints)
#   --initrd FILE     a prebuilt initramfs (default: built with vm/initramfs.sh)
#
# Per boot: ms from starting QEMU to the agent's Hello and to its Pong (measured by the host
# client, crates/proto/examples/agent-client.rs), whether the QEMU process is named
# isola-vm-test (ps -o comm=), and whether QEMU exited by itself after Shutdown (within 5 s).
# Prints median/min/max. Exit status 0 when every boot passed.
# Environment: ISOLA_TSC_KHZ overrides the host TSC frequency; QEMU the QEMU binary.
set -euo pipefail

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
VM_DIR=$(dirname "$SCRIPT_PATH")
REPO=$(dirname "$VM_DIR")
QEMU=${QEMU:-qemu-system-x86_64}
NAME=isola-vm-test
log() { printf 'agent-check: %s\n' "$*" >&2; }
die() { printf 'agent-check: error: %s\n' "$*" >&2; exit 2; }
usage() { sed -n '2,18p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//' >&2; exit "${1:-2}"; }

BOOTS=5
DEADLINE=10
KERNEL_DIR=""
INITRD=""
while [ $# -gt 0 ]; do
    case "$1" in
        -n) [ $# -ge 2 ] || usage; BOOTS=$2; shift 2 ;;
        -t) [ $# -ge 2 ] || usage; DEADLINE=$2; shift 2 ;;
        --kernel-dir) [ $# -ge 2 ] || usage; KERNEL_DIR=$2; shift 2 ;;
        --initrd) [ $# -ge 2 ] || usage; INITRD=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) log "unknown argument $1"; usage ;;
    esac
done
[[ $BOOTS =~ ^[1-9][0-9]*$ ]] || die "-n wants a positive integer"
[[ $DEADLINE =~ ^[1-9][0-9]*$ ]] || die "-t wants a positive integer"
command -v "$QEMU" >/dev/null || die "$QEMU not found (apt-get install qemu-system-x86)"
[ -n "$KERNEL_DIR" ] || KERNEL_DIR=$("$VM_DIR/build-kernel.sh" | tail -n 1)
KERNEL=$KERNEL_DIR/vmlinux
[ -f "$KERNEL" ] || die "no vmlinux in $KERNEL_DIR"

# Host TSC frequency for tsc_early_khz (same source order as boot-check.sh).
tsc_khz() {
    local mhz=""
    if [ -n "${ISOLA_TSC_KHZ:-}" ]; then echo "$ISOLA_TSC_KHZ"; return; fi
    mhz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/\1/p' | tail -n 1)
    [ -n "$mhz" ] || mhz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Detected \([0-9.]*\) MHz.*/\1/p' | tail -n 1)
    [ -n "$mhz" ] || mhz=$(sed -n 's/^cpu MHz[[:space:]]*: \([0-9.]*\).*/\1/p' /proc/cpuinfo | head -n 1)
    [ -n "$mhz" ] || return 1
    awk -v m="$mhz" 'BEGIN { printf "%d\n", m * 1000 + 0.5 }'
}
TSC_KHZ=$(tsc_khz) || die "cannot find the host TSC frequency (set ISOLA_TSC_KHZ)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/isola-agent-check.XXXXXX")
QPID=""
cleanup() {
    if [ -n "$QPID" ]; then kill -KILL "$QPID" 2>/dev/null || true; wait "$QPID" 2>/dev/null || true; fi
    if [ -n "$(ls "$WORK"/*.failed 2>/dev/null)" ]; then
        log "logs of failed boots kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

if [ -z "$INITRD" ]; then
    INITRD=$WORK/initramfs.cpio.gz
    "$VM_DIR/initramfs.sh" "$INITRD"
fi
log "building the host client"
( cd "$REPO" && cargo build -q -p isola-proto --example agent-client ) >&2
CLIENT=${CARGO_TARGET_DIR:-$REPO/target}/debug/examples/agent-client

APPEND="console=ttyS0 reboot=t panic=-1 tsc_early_khz=$TSC_KHZ tsc=reliable quiet"
now_us() { local t=${EPOCHREALTIME/./}; echo $((10#$t)); }
# QEMU has exited when its process is gone or a zombie (kill -0 cannot tell the latter).
qemu_gone() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null || true); [ -z "$s" ] || [[ $s == Z* ]]; }

log "kernel $KERNEL_DIR ($(cat "$KERNEL_DIR/version" 2>/dev/null || echo '?')); initrd $(stat -c %s "$INITRD") bytes"
log "qemu: $($QEMU --version | head -n 1); $BOOTS boots; deadline ${DEADLINE}s"

hello=(); pong=(); hangs=0; fails=0; selfexit=0; named=0
for i in $(seq 1 "$BOOTS"); do
    sock=$WORK/agent-$i.sock; con=$WORK/console-$i.log
    t0=$(now_us)
    "$QEMU" -name "$NAME,process=$NAME" \
        -M microvm,acpi=off,pic=on,pit=on,rtc=on -accel tcg -cpu max -m 256 -smp 1 \
        -nodefaults -no-user-config -nographic -no-reboot -serial "file:$con" \
        -kernel "$KERNEL" -initrd "$INITRD" -append "$APPEND" \
        -device virtio-serial-device \
        -chardev "socket,id=agent,path=$sock,server=on,wait=off" \
        -device virtserialport,chardev=agent,name=isola.agent \
        </dev/null >"$WORK/qemu-$i.out" 2>&1 &
    QPID=$!
    # QEMU renames itself (prctl) while parsing its options, before it opens the socket:
    # check the name now (after Shutdown the process may already be gone).
    comm=""
    for _ in $(seq 1 100); do
        comm=$(ps -o comm= -p "$QPID" 2>/dev/null || true)
        [ "$comm" = "$NAME" ] && break
        sleep 0.01
    done
    out=$(timeout $((DEADLINE + 15)) "$CLIENT" "$sock" --t0-us "$t0" --deadline-ms $((DEADLINE * 1000)) || true)
    [ "$comm" = "$NAME" ] && named=$((named + 1))
    if [[ $out == hello_ms=* ]]; then
        [[ $out =~ hello_ms=([0-9]+)\ pong_ms=([0-9]+) ]]
        h=${BASH_REMATCH[1]}; p=${BASH_REMATCH[2]}
        hello+=("$h"); pong+=("$p")
        stop=$(( $(now_us) + 5000000 )); ended=killed
        while [ "$(now_us)" -lt "$stop" ]; do
            if qemu_gone "$QPID"; then ended=exited; break; fi
            sleep 0.05
        done
        [ "$ended" = exited ] && selfexit=$((selfexit + 1))
        [ "$ended" = exited ] || touch "$WORK/boot-$i.failed"
        printf 'boot %3d: hello %5d ms, pong %5d ms, comm=%s, QEMU %s\n' "$i" "$h" "$p" "${comm:-?}" \
            "$([ "$ended" = exited ] && echo 'exited by itself' || echo 'did NOT exit (killed)')"
    elif [[ $out == *"no message within"* || $out == *"connect "* || -z $out ]]; then
        hangs=$((hangs + 1)); touch "$WORK/boot-$i.failed"
        printf 'boot %3d: HANG: %s (console: %s)\n' "$i" "${out:-client timed out}" "$con"
    else
        fails=$((fails + 1)); touch "$WORK/boot-$i.failed"
        printf 'boot %3d: FAILED: %s (console: %s)\n' "$i" "$out" "$con"
    fi
    kill -KILL "$QPID" 2>/dev/null || true
    wait "$QPID" 2>/dev/null || true
    QPID=""
done

stats() {   # numbers on stdin -> "median min max"
    sort -n | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "- - -"; exit }
        m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        printf "%s %s %s\n", m, a[1], a[NR] }'
}
echo "---"
printf 'boots: %d, agent answered: %d, hangs: %d, failed: %d\n' "$BOOTS" "${#hello[@]}" "$hangs" "$fails"
if [ "${#hello[@]}" -gt 0 ]; then
    read -r hm hmin hmax < <(printf '%s\n' "${hello[@]}" | stats)
    read -r pm pmin pmax < <(printf '%s\n' "${pong[@]}" | stats)
    printf 'QEMU start -> Hello: median %s ms, min %s ms, max %s ms\n' "$hm" "$hmin" "$hmax"
    printf 'QEMU start -> Pong:  median %s ms, min %s ms, max %s ms\n' "$pm" "$pmin" "$pmax"
    printf 'QEMU exited by itself after Shutdown: %d of %d\n' "$selfexit" "${#hello[@]}"
fi
printf 'QEMU process named %s (ps -o comm=): %d of %d\n' "$NAME" "$named" "$BOOTS"
[ "$hangs" -eq 0 ] && [ "$fails" -eq 0 ] && [ "$selfexit" -eq "${#hello[@]}" ] && [ "$named" -eq "$BOOTS" ]
