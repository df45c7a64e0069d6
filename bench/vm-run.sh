#!/usr/bin/env bash
# Benchmark: a whole VM-isolated container against the same container in process isolation and
# against a plain QEMU boot of Debian's stock kernel, in one run; where a VM container's start
# goes; and the host memory an idle VM-isolated container holds.
#
#   bench/vm-run.sh [-n ROUNDS] [-c IDLE] [-o RESULTS.md] [--no-write]
#
# 1. ROUNDS (default 20) interleaved rounds, after one warm-up of each: `isola run --rm
#    --isolation=vm busybox true`, `isola run --rm --isolation=process busybox true`, and one boot
#    of Debian's stock kernel with a busybox initramfs to its init on `-M microvm` (the naive
#    baseline, booted by crates/vm/examples/vm-boot.rs). Wall time of each, to the command's exit.
# 2. IDLE (default 5) containers `isola run -d --isolation=vm busybox sleep 1000`: the boot
#    breakdown `isola inspect` records (VM.Boot: VMM start, guest kernel, agent, template load,
#    create, start; a VM restored from a template has no kernel boot, and its agent time is the
#    answer to `Restored`), medians over the IDLE containers; then, 5 s after the last started,
#    RSS and PSS (/proc/PID/smaps_rollup) of each QEMU and of each monitor, while all IDLE run at
#    once (PSS splits shared pages among them).
#
# The accelerator is what isola decides on this host (`isola info`); on our hosts TCG.
# Needs root. Prints the results and writes its section of bench/RESULTS.md unless --no-write.
set -euo pipefail

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
repo=$(dirname "$here")
log() { printf 'vm-run: %s\n' "$*" >&2; }
die() { printf 'vm-run: error: %s\n' "$*" >&2; exit 2; }
usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit "${1:-2}"; }

rounds=20
idle=5
results=$here/RESULTS.md
write=1
while [ $# -gt 0 ]; do
    case "$1" in
        -n) [ $# -ge 2 ] || usage; rounds=$2; shift 2 ;;
        -c) [ $# -ge 2 ] || usage; idle=$2; shift 2 ;;
        -o) [ $# -ge 2 ] || usage; results=$2; shift 2 ;;
        --no-write) write=0; shift ;;
        -h|--help) usage 0 ;;
        *) log "unknown argument $1"; usage ;;
    esac
done
for v in "$rounds" "$idle"; do
    [[ $v =~ ^[1-9][0-9]*$ ]] || die "-n and -c want positive numbers"
done
[ "$(id -u)" = 0 ] || die "run as root (containers, VMs)"

cd "$repo"
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
fi
./scripts/install-deps.sh
target=${CARGO_TARGET_DIR:-$repo/target}
case "$target" in /*) ;; *) target=$repo/$target ;; esac
log "building isola, the static agent and the boot driver (release)"
cargo build --quiet --locked --release -p isola
cargo build --quiet --locked --release -p isola-vm --example vm-boot
./scripts/build-agent.sh --profile release >/dev/null
export ISOLA_AGENT=$target/agent-static/release/isola-agent
isola_bin=$target/release/isola
driver=$target/release/examples/vm-boot
vm/build-kernel.sh >/dev/null

work=$(mktemp -d /tmp/isola-vmrun.XXXXXX)
isola() { "$isola_bin" --root "$work/root" --run-root "$work/run" "$@"; }
cleanup() {
    isola rm -f $(isola ps -aq 2>/dev/null) >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=bench/lib/baseline.sh
. "$here/lib/baseline.sh"
baseline_kernel=$(stock_kernel "$work")
baseline_initrd=$(busybox_initrd "$work")

isola image builtin >/dev/null
now_ms() { local t=${EPOCHREALTIME/./}; echo $((10#$t / 1000)); }
timed() {   # prints the wall ms of "$@", which must succeed
    local t0 t1
    t0=$(now_ms)
    "$@" >/dev/null 2>&1 || die "failed: $*"
    t1=$(now_ms)
    echo $((t1 - t0))
}
baseline_boot() {   # one stock-kernel boot to init, in ms
    "$driver" --boots 1 --deadline-s 30 --accel tcg --idle-s 0 --agent "$ISOLA_AGENT" \
        --baseline-kernel "$baseline_kernel" --baseline-initrd "$baseline_initrd" \
        --baseline-boots 1 2>/dev/null | sed -n 's/^baseline .* init_ms=\([0-9.]*\).*/\1/p' | head -n 1
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
log "warm-up (the accelerator probe and the initramfs are made once)"
timed isola run --rm --isolation=vm busybox true >/dev/null
timed isola run --rm --isolation=process busybox true >/dev/null
baseline_boot >/dev/null
: >"$work/vm.ms"; : >"$work/process.ms"; : >"$work/baseline.ms"
log "$rounds interleaved rounds"
for _ in $(seq 1 "$rounds"); do
    timed isola run --rm --isolation=vm busybox true >>"$work/vm.ms"
    timed isola run --rm --isolation=process busybox true >>"$work/process.ms"
    b=$(baseline_boot)
    [ -n "$b" ] && echo "$b" >>"$work/baseline.ms"
done

log "$idle idle VM-isolated containers"
ids=()
for _ in $(seq 1 "$idle"); do
    ids+=("$(isola run -d --isolation=vm busybox sleep 1000)")
done
sleep 5
: >"$work/boot.tsv"; : >"$work/mem.tsv"
for id in "${ids[@]}"; do
    isola inspect -f '{{json .VM.Boot}}' "$id" | python3 -c '
import json, sys
b = json.load(sys.stdin)
r = b.get("Restore") or {}
print(b["VmmMs"], b["KernelMs"], b["AgentMs"], r.get("LoadMs", 0), b["CreateMs"], b["StartMs"], b["TotalMs"], 1 if r else 0)' >>"$work/boot.tsv"
    qpid=$(isola inspect -f '{{.State.Pid}}' "$id")
    mpid=$(pgrep -f -- "__monitor $id" | head -n 1 || true)
    q=$(awk '/^Rss:/ { r = $2 } /^Pss:/ { p = $2 } END { print r, p }' "/proc/$qpid/smaps_rollup")
    m=$( [ -n "$mpid" ] && awk '/^Rss:/ { r = $2 } /^Pss:/ { p = $2 } END { print r, p }' "/proc/$mpid/smaps_rollup" || echo "0 0")
    echo "$q $m" >>"$work/mem.tsv"
done
accel=$(isola info | sed -n 's/^  Accelerator: //p')
isola rm -f "${ids[@]}" >/dev/null
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

read -r n_vm vm_med vm_p90 vm_min vm_max < <(stats <"$work/vm.ms")
read -r n_pr pr_med pr_p90 pr_min pr_max < <(stats <"$work/process.ms")
read -r n_bl bl_med bl_p90 bl_min bl_max < <(stats <"$work/baseline.ms")
col() { awk -v c="$1" '{ print $c }' "$2" | stats | awk '{ print $2 }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }

report() {
    echo "### 1. \`run --rm busybox true\`, $rounds interleaved rounds (wall time to exit)"
    echo
    echo "| | median | p90 | min | max |"
    echo "|---|---|---|---|---|"
    echo "| \`isola run --rm --isolation=vm\` | **$vm_med ms** | $vm_p90 | $vm_min | $vm_max |"
    echo "| \`isola run --rm --isolation=process\` | $pr_med ms | $pr_p90 | $pr_min | $pr_max |"
    echo "| plain QEMU microvm, Debian stock kernel to init ($n_bl boots) | $bl_med ms | $bl_p90 | $bl_min | $bl_max |"
    echo
    echo "Ratios of medians: VM / process **$(ratio "$vm_med" "$pr_med")**, VM / plain stock boot **$(ratio "$vm_med" "$bl_med")** (accelerator: $accel). Target on TCG here: ≤ 500 ms."
    echo
    echo "### 2. Where a VM container's start goes (VM.Boot of \`isola inspect\`, median of $idle)"
    echo
    echo "$(awk '{ n += $8 } END { print n + 0 }' "$work/boot.tsv") of the $idle VMs were restored from a template (\`VM.Boot.Restore\`): for those, the VMM column ends when QEMU is told to load the template, there is no kernel boot, and the agent column is its answer to \`Restored\`."
    echo
    echo "| QEMU start → guest kernel | guest kernel → /init (the agent) | agent start → Hello | template load | Hello → container created | created → started | total |"
    echo "|---|---|---|---|---|---|---|"
    echo "| $(col 1 "$work/boot.tsv") ms | $(col 2 "$work/boot.tsv") ms | $(col 3 "$work/boot.tsv") ms | $(col 4 "$work/boot.tsv") ms | $(col 5 "$work/boot.tsv") ms | $(col 6 "$work/boot.tsv") ms | $(col 7 "$work/boot.tsv") ms |"
    echo
    echo "### 3. Host memory per idle VM-isolated container ($idle running at once, median)"
    echo
    echo "| | RSS | PSS |"
    echo "|---|---|---|"
    echo "| QEMU | $(mib "$(col 1 "$work/mem.tsv")") MiB | **$(mib "$(col 2 "$work/mem.tsv")") MiB** |"
    echo "| monitor (\`isola __monitor\`) | $(mib "$(col 3 "$work/mem.tsv")") MiB | $(mib "$(col 4 "$work/mem.tsv")") MiB |"
    echo
    echo "Target: ≤ 64 MiB per idle container (Kata ≈ 124 MiB PSS)."
}

section=$work/section.md
begin='<!-- bench/vm-run.sh: begin (this section is rewritten by bench/vm-run.sh) -->'
end='<!-- bench/vm-run.sh: end -->'
rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
{
    echo "$begin"
    echo
    echo "# VM-isolated containers: run --rm against process isolation and a plain stock boot"
    echo
    echo "Written by \`bench/vm-run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'). Lower is better."
    echo
    echo "- $(nproc) CPUs, kernel $(uname -r); load average at the start: $load_start; at the end: $load_end"
    echo "- isola $rev; $(qemu-system-x86_64 --version | head -n 1); baseline kernel $baseline_kernel"
    echo
    report
    echo
    echo '```sh'
    echo "sudo bench/vm-run.sh        # -n ROUNDS (default 20), -c IDLE (5), -o FILE, --no-write"
    echo '```'
    echo
    echo "$end"
} >"$section"
cat "$section"

if [ "$write" = 1 ]; then
    if [ ! -f "$results" ]; then
        cat "$section" >"$results"
    elif grep -qxF "$begin" "$results" && grep -qxF "$end" "$results"; then
        awk -v b="$begin" -v e="$end" -v f="$section" '
            $0 == b { while ((getline l < f) > 0) print l; skip = 1; next }
            $0 == e { skip = 0; next }
            !skip { print }' "$results" >"$results.tmp"
        mv "$results.tmp" "$results"
    else
        { echo; cat "$section"; } >>"$results"
    fi
    log "wrote its section of $results"
fi
