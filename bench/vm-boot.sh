#!/usr/bin/env bash
# Benchmark: VM boots to the guest agent's Hello, with isola's own QEMU command line, guest kernel
# and initramfs, next to a naive baseline (Debian's stock kernel with a busybox initramfs).
#
#   bench/vm-boot.sh [-n BOOTS] [-b BASELINE_BOOTS] [-c COMPRESSION_BOOTS] [-t SECONDS] [-o RESULTS.md] [--no-write]
#
# 1. BOOTS (default 100) consecutive boots by crates/vm/examples/vm-boot.rs, which drives the VM
#    driver isola itself uses (isola_vm::qemu::Vm, the agent Client; assets from
#    isola_vm::assets::locate, accelerator from the real probe of isola_vm::accel::decide): QEMU
#    start -> Hello, then Ping, Shutdown and QEMU's own exit. 1 vCPU, 512 MiB (a container's
#    default), a 9p share as a container's root. A boot with no Hello within SECONDS (default 20)
#    is a hang (QEMU is killed); there must be none. Then one more VM is left idle for 5 s after
#    its Hello and QEMU's RSS and PSS are read (/proc/PID/smaps_rollup).
# 2. The naive baseline, BASELINE_BOOTS (default 20) boots in the same run: Debian's stock kernel
#    (the newest /boot/vmlinuz-*, else the kernel of linux-image-cloud-amd64, fetched once with
#    `apt-get download` into ${ISOLA_CACHE:-/var/cache/isola}/bench) with a busybox initramfs
#    whose /init prints a marker, on `-M microvm` with its defaults (ACPI on); QEMU start ->
#    marker. Prints the ratio of the medians.
# 3. COMPRESSION_BOOTS (default 40, 0 skips) boots alternating isola's plain initramfs with a
#    gzip copy of it (why isola does not compress it).
#
# Prints the results and writes its section of bench/RESULTS.md unless --no-write.
# Environment: CARGO_TARGET_DIR as for cargo; ISOLA_TSC_KHZ overrides the host TSC frequency.
set -euo pipefail

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
repo=$(dirname "$here")
log() { printf 'vm-boot: %s\n' "$*" >&2; }
die() { printf 'vm-boot: error: %s\n' "$*" >&2; exit 2; }
usage() { sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit "${1:-2}"; }

boots=100
baseline_boots=20
compression_boots=40
deadline=20
results=$here/RESULTS.md
write=1
while [ $# -gt 0 ]; do
    case "$1" in
        -n) [ $# -ge 2 ] || usage; boots=$2; shift 2 ;;
        -b) [ $# -ge 2 ] || usage; baseline_boots=$2; shift 2 ;;
        -c) [ $# -ge 2 ] || usage; compression_boots=$2; shift 2 ;;
        -t) [ $# -ge 2 ] || usage; deadline=$2; shift 2 ;;
        -o) [ $# -ge 2 ] || usage; results=$2; shift 2 ;;
        --no-write) write=0; shift ;;
        -h|--help) usage 0 ;;
        *) log "unknown argument $1"; usage ;;
    esac
done
for v in "$boots" "$baseline_boots" "$compression_boots" "$deadline"; do
    [[ $v =~ ^[0-9]+$ ]] || die "counts and seconds must be whole numbers"
done
[ "$boots" -gt 0 ] || die "-n must be at least 1"
[ "$(id -u)" = 0 ] || die "run as root (/dev/kvm, the kernel cache)"

cd "$repo"
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
fi
./scripts/install-deps.sh
target=${CARGO_TARGET_DIR:-$repo/target}
case "$target" in /*) ;; *) target=$repo/$target ;; esac

log "building the boot driver (release) and the static agent"
cargo build --quiet --locked --release -p isola-vm --example vm-boot
agent=$(./scripts/build-agent.sh --profile release)
driver=$target/release/examples/vm-boot
kernel_dir=$(vm/build-kernel.sh | tail -n 1)
export ISOLA_KERNEL=$kernel_dir/vmlinux

work=$(mktemp -d "${TMPDIR:-/tmp}/isola-vm-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- the baseline: Debian's stock kernel and a busybox initramfs ----------------------------
# shellcheck source=bench/lib/baseline.sh
. "$here/lib/baseline.sh"
baseline_kernel=$(stock_kernel "$work")
baseline_initrd=$(busybox_initrd "$work")

# --- runs ------------------------------------------------------------------------------------
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
log "$boots boots to Hello, then $baseline_boots baseline boots ($baseline_kernel)"
"$driver" --boots "$boots" --deadline-s "$deadline" --accel auto --idle-s 5 --agent "$agent" \
    --baseline-kernel "$baseline_kernel" --baseline-initrd "$baseline_initrd" \
    --baseline-boots "$baseline_boots" >"$work/main.out" || true
if [ "$compression_boots" -gt 0 ]; then
    log "$compression_boots boots alternating the plain and the gzip initramfs"
    "$driver" --boots "$compression_boots" --deadline-s "$deadline" --accel tcg --idle-s 0 \
        --compression alternate --agent "$agent" >"$work/gzip.out" || true
fi
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- statistics ------------------------------------------------------------------------------
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
read -r n_up med p90 min max < <(grep '^boot ' "$work/main.out" | field hello_ms | stats)
read -r _ gmed _ _ _ < <(grep '^boot ' "$work/main.out" | field guest_init_ms | stats)
hangs=$(grep -c '^hang [0-9]* plain' "$work/main.out" || true)
fails=$(grep -c '^fail [0-9]* plain' "$work/main.out" || true)
selfexit=$(grep '^boot ' "$work/main.out" | grep -c 'exit=self' || true)
read -r rss pss < <(sed -n 's/^idle rss_kib=\([0-9]*\) pss_kib=\([0-9]*\).*/\1 \2/p' "$work/main.out" | head -n 1)
read -r b_n b_med b_p90 b_min b_max < <(grep '^baseline ' "$work/main.out" | field init_ms | stats)
read -r _ b_hwm _ _ _ < <(grep '^baseline ' "$work/main.out" | field hwm_kib | stats)
b_bad=$(grep -c '^\(hang\|fail\) [0-9]* baseline' "$work/main.out" || true)
read -r _ hwm _ _ _ < <(sed -n 's/^idle .*hwm_kib=\([0-9]*\).*/\1/p' "$work/main.out" | stats)
accel_line=$(sed -n 's/^accel //p' "$work/main.out")
asset() { sed -n "s/^assets $1 //p" "${2:-$work/main.out}"; }
mib() { awk -v k="$1" 'BEGIN { if (k == "" || k == "-") print "-"; else printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
if [ -f "$work/gzip.out" ]; then
    read -r zp_n zp_med zp_p90 zp_min zp_max < <(grep '^boot [0-9]* plain' "$work/gzip.out" | field hello_ms | stats)
    read -r zg_n zg_med zg_p90 zg_min zg_max < <(grep '^boot [0-9]* gzip' "$work/gzip.out" | field hello_ms | stats)
    z_bad=$(grep -c '^\(hang\|fail\) ' "$work/gzip.out" || true)
fi

report() {
    echo "### 1. $boots consecutive boots to the agent's Hello"
    echo
    echo "| | value |"
    echo "|---|---|"
    echo "| boots with Hello | $n_up of $boots |"
    echo "| **hangs** (no Hello within ${deadline} s) | **$hangs** |"
    echo "| failures | $fails |"
    echo "| QEMU start → Hello, median / p90 / max | **$med / $p90 / $max ms** (min $min) |"
    echo "| of which the guest kernel (guest uptime at /init), median | $gmed ms |"
    echo "| QEMU exited by itself after Shutdown | $selfexit of $n_up |"
    echo "| idle VM (5 s after Hello): QEMU RSS / PSS | $(mib "$rss") / $(mib "$pss") MiB (peak RSS $(mib "$hwm") MiB) |"
    echo "| accelerator | $accel_line |"
    echo
    echo "### 2. Naive baseline: Debian's stock kernel + busybox initramfs, to init"
    echo
    echo "| | isola (to Hello) | baseline (to init) |"
    echo "|---|---|---|"
    echo "| boots | $n_up | $b_n ($b_bad hangs or failures) |"
    echo "| median / p90 / max | $med / $p90 / $max ms | $b_med / $b_p90 / $b_max ms |"
    echo "| QEMU peak RSS (median) | $(mib "$hwm") MiB | $(mib "$b_hwm") MiB |"
    echo
    echo "Ratio of medians, isola / baseline: **$(ratio "$med" "$b_med")** (the baseline takes $(ratio "$b_med" "$med") × as long, and stops earlier: at init, not at an agent's Hello over virtio-serial)."
    if [ -f "$work/gzip.out" ]; then
        echo
        echo "### 3. Initramfs compression ($compression_boots boots, alternating, TCG)"
        echo
        echo "| initramfs | bytes | boots | QEMU start → Hello, median / p90 / min / max |"
        echo "|---|---|---|---|"
        echo "| plain cpio (what isola uses) | $(asset initramfs_plain_bytes "$work/gzip.out") | $zp_n | $zp_med / $zp_p90 / $zp_min / $zp_max ms |"
        echo "| gzip -9 | $(asset initramfs_gzip_bytes "$work/gzip.out") | $zg_n | $zg_med / $zg_p90 / $zg_min / $zg_max ms |"
        echo
        echo "Hangs or failures: $z_bad."
    fi
}

echo
report
echo

[ "$write" = 1 ] || { [ "$hangs" = 0 ] && [ "$fails" = 0 ]; exit; }

# --- RESULTS.md --------------------------------------------------------------------------------
# This script owns the lines between its two markers and nothing else.
begin='<!-- bench/vm-boot.sh: begin (this section is rewritten by bench/vm-boot.sh) -->'
end='<!-- bench/vm-boot.sh: end -->'
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$repo" status --porcelain -- crates vm 2>/dev/null | head -n 1)
[ -n "$dirty" ] && rev="$rev (with uncommitted changes)"
section=$work/section.md
{
    echo "$begin"
    echo
    echo "# VM boots: isola's guest to the agent's Hello, against a stock kernel"
    echo
    echo "Written by \`bench/vm-boot.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'). Lower is better."
    echo
    echo "## Machine"
    echo
    echo "- $(nproc) CPUs ($cpu_model), $(free -g | awk '/^Mem:/ { print $2 }') GiB memory, kernel $(uname -r); /dev/kvm: $([ -e /dev/kvm ] && echo present || echo absent)"
    echo "- load average (1, 5, 15 min) at the start: $load_start; at the end: $load_end"
    echo "- isola $rev; QEMU $(asset qemu)"
    echo "- guest: kernel $(asset kernel); agent $(asset agent); $(asset memory_mib) MiB, 1 vCPU"
    echo "- baseline: $baseline_kernel ($(stat -c %s "$baseline_kernel") bytes), busybox initramfs $(stat -c %s "$baseline_initrd") bytes"
    echo
    echo "## Results"
    echo
    report
    echo
    echo "## Reproduce"
    echo
    echo '```sh'
    echo "sudo bench/vm-boot.sh        # -n BOOTS (default 100), -b BASELINE_BOOTS (20), -c COMPRESSION_BOOTS (40), -t SECONDS (20), -o FILE, --no-write"
    echo '```'
    echo
    echo "$end"
} >"$section"

if [ ! -f "$results" ]; then
    cat "$section" >"$results"
elif grep -qxF "$begin" "$results" && grep -qxF "$end" "$results"; then
    awk -v b="$begin" -v e="$end" -v f="$section" '
        $0 == b { while ((getline l < f) > 0) print l; skip = 1; next }
        $0 == e { skip = 0; next }
        !skip { print }' "$results" >"$work/results.new"
    cat "$work/results.new" >"$results"
else
    { echo; cat "$section"; } >>"$results"
fi
log "wrote $results"
[ "$hangs" = 0 ] && [ "$fails" = 0 ]
