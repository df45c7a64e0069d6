#!/usr/bin/env bash
# Boot isola's guest kernel N times under QEMU microvm (TCG) with a tiny busybox
# initramfs, and measure it; then try one short boot under KVM.
#
#   vm/boot-check.sh [KERNEL_DIR] [-n BOOTS] [-t SECONDS] [--kvm-deadline SECONDS] [--no-kvm]
#
#   KERNEL_DIR      a directory holding vmlinux (default: the one vm/build-kernel.sh
#                   prints, which builds it first if it is not cached)
#   -n BOOTS        TCG boots to run (default 10)
#   -t SECONDS      per-boot deadline: a boot without the marker by then is killed
#                   and counted as a hang (default 20)
#   --kvm-deadline  deadline of the KVM attempt (default 5)
#   --no-kvm        skip the KVM attempt
#
# Each boot: PVH direct boot of the uncompressed vmlinux on `-M microvm,acpi=off`;
# /init prints ISOLA-GUEST-UP and ends the VM. Measured per boot: wall time
# from starting QEMU to the marker on the serial console, and QEMU's peak RSS
# (VmHWM when the marker arrives). Printed: median/min/max and hangs. The console
# output of every TCG boot that did not reach the marker is kept (path printed).
# Exit status: 0 if every TCG boot reached the marker, 1 otherwise.
#
# Environment: ISOLA_TSC_KHZ overrides the host TSC frequency given to the guest;
# QEMU overrides the QEMU binary (default qemu-system-x86_64).
set -euo pipefail

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
VM_DIR=$(dirname "$SCRIPT_PATH")
MARKER=ISOLA-GUEST-UP
QEMU=${QEMU:-qemu-system-x86_64}
RUNTIME_DEPS=(qemu-system-x86 busybox-static cpio)

log() { printf 'boot-check: %s\n' "$*" >&2; }
die() { printf 'boot-check: error: %s\n' "$*" >&2; exit 2; }
usage() { sed -n '2,25p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//' >&2; exit "${1:-2}"; }

BOOTS=10
DEADLINE=20
KVM_DEADLINE=5
TRY_KVM=1
KERNEL_DIR=""
while [ $# -gt 0 ]; do
    case "$1" in
        -n) [ $# -ge 2 ] || usage; BOOTS=$2; shift 2 ;;
        -t) [ $# -ge 2 ] || usage; DEADLINE=$2; shift 2 ;;
        --kvm-deadline) [ $# -ge 2 ] || usage; KVM_DEADLINE=$2; shift 2 ;;
        --no-kvm) TRY_KVM=0; shift ;;
        -h|--help) usage 0 ;;
        -*) log "unknown option $1"; usage ;;
        *) [ -z "$KERNEL_DIR" ] || usage; KERNEL_DIR=$1; shift ;;
    esac
done
[[ $BOOTS =~ ^[1-9][0-9]*$ ]] || die "-n wants a positive integer"
[[ $DEADLINE =~ ^[1-9][0-9]*$ ]] || die "-t wants a positive integer"
[[ $KVM_DEADLINE =~ ^[1-9][0-9]*$ ]] || die "--kvm-deadline wants a positive integer"

# --- dependencies ---------------------------------------------------------------
missing=()
for p in "${RUNTIME_DEPS[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing packages (${missing[*]}); run as root or install them"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v "$QEMU" >/dev/null || die "$QEMU not found"

if [ -z "$KERNEL_DIR" ]; then
    KERNEL_DIR=$("$VM_DIR/build-kernel.sh" | tail -n 1)
fi
KERNEL=$KERNEL_DIR/vmlinux
[ -f "$KERNEL" ] || die "no vmlinux in $KERNEL_DIR"

# --- host TSC frequency (the guest cannot calibrate it reliably under TCG) -------------
tsc_khz() {
    local mhz=""
    if [ -n "${ISOLA_TSC_KHZ:-}" ]; then echo "$ISOLA_TSC_KHZ"; return; fi
    # Prefer the kernel's own figure: the refined calibration, else the detected one.
    mhz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/\1/p' | tail -n 1)
    [ -n "$mhz" ] || mhz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Detected \([0-9.]*\) MHz.*/\1/p' | tail -n 1)
    [ -n "$mhz" ] || mhz=$(sed -n 's/^cpu MHz[[:space:]]*: \([0-9.]*\).*/\1/p' /proc/cpuinfo | head -n 1)
    [ -n "$mhz" ] || return 1
    awk -v m="$mhz" 'BEGIN { printf "%d\n", m * 1000 + 0.5 }'
}
TSC_KHZ=$(tsc_khz) || die "cannot find the host TSC frequency (set ISOLA_TSC_KHZ)"

# --- initramfs: static busybox, /init prints the marker and ends the VM ---------------
# Not `poweroff -f`: with ACPI off the guest kernel has no power-off method, so
# poweroff halts the CPU ("reboot: System halted") and QEMU keeps running. A
# reboot is a triple fault (reboot=t), which QEMU turns into its exit (-no-reboot).
WORK=$(mktemp -d "${TMPDIR:-/tmp}/isola-boot-check.XXXXXX")
LOG_DIR=$WORK/logs
QPID=""
cleanup() {
    if [ -n "$QPID" ]; then kill -KILL "$QPID" 2>/dev/null || true; wait "$QPID" 2>/dev/null || true; fi
    exec 3<&- 2>/dev/null || true
    # keep the logs of failed boots, drop the rest
    if [ -n "$(ls -A "$LOG_DIR" 2>/dev/null)" ]; then
        rm -rf "$WORK/root" "$WORK/initramfs.cpio.gz" "$WORK/console.fifo"
        log "console logs of failed boots kept in $LOG_DIR"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
mkdir -p "$LOG_DIR"

BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || BUSYBOX=/bin/busybox
if ldd "$BUSYBOX" >/dev/null 2>&1; then
    die "$BUSYBOX is not statically linked (install busybox-static)"
fi
ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,dev,proc,sys}
cp "$BUSYBOX" "$ROOT/bin/busybox"
ln -s busybox "$ROOT/bin/sh"
if [ "$(id -u)" = 0 ]; then mknod -m 600 "$ROOT/dev/console" c 5 1; fi
cat > "$ROOT/init" <<EOF
#!/bin/busybox sh
echo $MARKER
exec /bin/busybox reboot -f
EOF
chmod 0755 "$ROOT/init"
INITRD=$WORK/initramfs.cpio.gz
( cd "$ROOT" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet ) | gzip -9 -n > "$INITRD"

APPEND="console=ttyS0 reboot=t panic=-1 tsc_early_khz=$TSC_KHZ tsc=reliable quiet"
# The KVM attempt drops `quiet` and adds earlyprintk, to show how far the guest gets.
APPEND_KVM="console=ttyS0 earlyprintk=ttyS0 reboot=t panic=-1 tsc_early_khz=$TSC_KHZ tsc=reliable"
qemu_cmd() {   # $1 = accelerator, $2 = kernel command line
    local cpu=max
    [ "$1" = kvm ] && cpu=host
    printf '%s\0' "$QEMU" -M microvm,acpi=off,pic=on,pit=on,rtc=on -accel "$1" -cpu "$cpu" \
        -m 256 -smp 1 -nodefaults -no-user-config -nographic -no-reboot -serial stdio \
        -kernel "$KERNEL" -initrd "$INITRD" -append "$2"
}

# One boot. Sets: R_STATUS (up|hang|fail), R_MS (ms to marker), R_RSS_KB (peak RSS at marker),
# R_EXIT (how QEMU ended after the marker: exit|killed), R_DETAIL.
FIFO=$WORK/console.fifo
mkfifo "$FIFO"
now_us() { local t=${EPOCHREALTIME/./}; echo $((10#$t)); }
boot_once() {   # $1 = accel, $2 = deadline seconds, $3 = log file, $4 = command line
    local accel=$1 deadline=$2 logf=$3 append=$4 line t0 t_end now remaining status="" rc
    local -a cmd
    mapfile -d '' cmd < <(qemu_cmd "$accel" "$append")
    R_STATUS=""; R_MS=""; R_RSS_KB=""; R_EXIT=""; R_DETAIL=""
    : > "$logf"
    t0=$(now_us)
    "${cmd[@]}" </dev/null >"$FIFO" 2>"$logf.stderr" &
    QPID=$!
    exec 3<"$FIFO"
    t_end=$(( t0 + deadline * 1000000 ))
    while :; do
        now=$(now_us)
        remaining=$(( t_end - now ))
        if [ "$remaining" -le 0 ]; then status=hang; break; fi
        remaining=$(awk -v us="$remaining" 'BEGIN { printf "%.3f", us / 1e6 }')
        if IFS= read -r -t "$remaining" -u 3 line; then
            printf '%s\n' "$line" >> "$logf"
            if [[ $line == *"$MARKER"* ]]; then
                now=$(now_us)
                R_MS=$(( (now - t0) / 1000 ))
                R_RSS_KB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$QPID/status" 2>/dev/null || true)
                status=up
                break
            fi
        else
            rc=$?
            if [ "$rc" -gt 128 ]; then status=hang; break; fi   # read timed out
            [ -n "$line" ] && printf '%s' "$line" >> "$logf"
            status=fail; break                                    # EOF: QEMU went away
        fi
    done
    if [ "$status" = up ]; then
        # Give the guest up to 3 s to end the VM by itself: EOF on the console means
        # QEMU has exited. (kill -0 cannot tell: an unreaped QEMU is still signalable.)
        local stop=$(( $(now_us) + 3000000 ))
        R_EXIT=killed
        while [ "$(now_us)" -lt "$stop" ]; do
            if IFS= read -r -t 0.2 -u 3 line; then
                printf '%s\n' "$line" >> "$logf"
            elif [ $? -le 128 ]; then
                R_EXIT=exit; break
            fi
        done
    fi
    kill -KILL "$QPID" 2>/dev/null || true
    wait "$QPID" 2>/dev/null && rc=0 || rc=$?
    QPID=""
    exec 3<&-
    if [ "$status" = fail ]; then
        R_DETAIL="QEMU exited with status $rc before the marker: $(tail -n 3 "$logf.stderr" | tr '\n' ' ')"
    fi
    R_STATUS=$status
    if [ "$status" = up ]; then rm -f "$logf" "$logf.stderr"; fi
}

stats() {   # numbers on stdin -> "median min max"
    sort -n | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "- - -"; exit }
        m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        printf "%s %s %s\n", m, a[1], a[NR] }'
}

log "kernel $KERNEL_DIR ($(cat "$KERNEL_DIR/version" 2>/dev/null || echo '?')), $(stat -c %s "$KERNEL") bytes"
log "qemu: $($QEMU --version | head -n 1)"
log "host TSC: $TSC_KHZ kHz; deadline ${DEADLINE}s; $BOOTS TCG boots"
log "guest command line: $APPEND"

times_ms=(); rss_kb=(); hangs=0; fails=0; selfexit=0
for i in $(seq 1 "$BOOTS"); do
    boot_once tcg "$DEADLINE" "$LOG_DIR/tcg-$i.log" "$APPEND"
    case "$R_STATUS" in
        up)
            times_ms+=("$R_MS"); rss_kb+=("${R_RSS_KB:-0}")
            [ "$R_EXIT" = exit ] && selfexit=$((selfexit + 1))
            printf 'boot %3d: up in %5d ms, peak RSS %4d MiB, QEMU %s\n' "$i" "$R_MS" \
                $(( ${R_RSS_KB:-0} / 1024 )) "$([ "$R_EXIT" = exit ] && echo 'exited' || echo 'killed (no power-off)')" ;;
        hang)
            hangs=$((hangs + 1))
            printf 'boot %3d: HANG (no marker within %d s; log %s)\n' "$i" "$DEADLINE" "$LOG_DIR/tcg-$i.log" ;;
        fail)
            fails=$((fails + 1))
            printf 'boot %3d: FAILED: %s\n' "$i" "$R_DETAIL" ;;
    esac
done

read -r t_med t_min t_max < <(printf '%s\n' "${times_ms[@]}" | grep . | stats || true)
read -r r_med r_min r_max < <(printf '%s\n' "${rss_kb[@]}" | grep . | stats || true)
echo "---"
printf 'TCG: %d boots, %d up, %d hangs, %d failed\n' "$BOOTS" "${#times_ms[@]}" "$hangs" "$fails"
if [ "${#times_ms[@]}" -gt 0 ]; then
    printf 'time to marker: median %s ms, min %s ms, max %s ms\n' "$t_med" "$t_min" "$t_max"
    printf 'QEMU peak RSS:  median %s MiB, min %s MiB, max %s MiB\n' \
        "$(awk -v k="$r_med" 'BEGIN { printf "%.1f", k / 1024 }')" \
        "$(awk -v k="$r_min" 'BEGIN { printf "%.1f", k / 1024 }')" \
        "$(awk -v k="$r_max" 'BEGIN { printf "%.1f", k / 1024 }')"
    printf 'VM end:         QEMU exited by itself (guest reboot -f) after %d of %d boots\n' "$selfexit" "${#times_ms[@]}"
fi

if [ "$TRY_KVM" = 1 ]; then
    if [ ! -e /dev/kvm ]; then
        echo "KVM: not tried (no /dev/kvm)"
    else
        boot_once kvm "$KVM_DEADLINE" "$LOG_DIR/kvm.log" "$APPEND_KVM"
        case "$R_STATUS" in
            up) echo "KVM: booted, marker after $R_MS ms, peak RSS $(( ${R_RSS_KB:-0} / 1024 )) MiB" ;;
            hang)
                echo "KVM: no marker within ${KVM_DEADLINE} s, QEMU killed; $(wc -l < "$LOG_DIR/kvm.log") console lines, the last:"
                echo "     $(grep -v '^[[:space:]]*$' "$LOG_DIR/kvm.log" | tail -n 1 | tr -d '\r')"
                if grep -q 'KVM internal error' "$LOG_DIR/kvm.log.stderr" "$LOG_DIR/kvm.log" 2>/dev/null; then
                    echo "     QEMU reported: $(grep -h -m1 -A9 'KVM internal error' "$LOG_DIR/kvm.log.stderr" "$LOG_DIR/kvm.log" 2>/dev/null | grep -m1 -E 'emulation failure|KVM internal error')"
                fi ;;
            fail) echo "KVM: failed: $R_DETAIL" ;;
        esac
        rm -f "$LOG_DIR/kvm.log" "$LOG_DIR/kvm.log.stderr"   # summarised above; expected to fail here
    fi
fi

[ "$hangs" -eq 0 ] && [ "$fails" -eq 0 ]
