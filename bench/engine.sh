#!/usr/bin/env bash
# Benchmark: the `isola` engine next to Podman: how fast `run --rm` is, how much memory the monitor
# of an idle container holds, and whether starting and removing many containers leaks anything.
#
#   bench/engine.sh [-n ROUNDS] [-c IDLE] [-m MANY] [-o RESULTS.md] [--no-write]
#
# 1. `isola run --rm busybox true` against `podman run --rm --network none busybox true`, ROUNDS
#    (default 20) interleaved rounds after two warm-up rounds; wall time read by bash. isola's default
#    network is `none` too (a private network namespace with only loopback).
# 2. IDLE (default 10) containers `run -d busybox sleep 1000`: RSS (VmRSS), PSS and USS
#    (Private_Clean + Private_Dirty, from /proc/PID/smaps_rollup) of each isola monitor (the
#    `isola ... __monitor ID` process), with a breakdown of one monitor's RSS by mapping; then the
#    same for Podman's conmon, for reference. PSS divides shared pages among the processes that map
#    them, so it depends on how many monitors run at once.
# 3. MANY (default 50) idle containers: started one `isola run -d` after another, then removed with
#    one `isola rm -f ID...`; wall time of each phase, then leak checks (PASS/FAIL): no monitor or
#    container process left, no mount under the roots, no cgroup directory of these containers under
#    /sys/fs/cgroup/*/isola/, empty <root>/containers, <run-root>/containers and <run-root>/runtime,
#    no zombie left to this script, no file descriptor of any process open under the scratch directory.
#
# Both engines use the busybox image of `isola image builtin`; Podman loads it from `isola save`.
# Everything lives in fresh throwaway roots under one scratch directory in /tmp (short, because
# sockets under the run root have at most 107 bytes of path). Podman runs runc with a throwaway
# containers.conf (default_ulimits at 1024, as our hosts lack CAP_SYS_RESOURCE; cgroupfs; events in a
# file) and storage.conf; nothing of the host's Podman is read or touched.
#
# The script makes itself a child subreaper (as bench/runtime.sh does), so that detached monitors
# and conmons are reparented to it and reaped, not left as zombies of a PID 1 that does not reap.
#
# Environment: ISOLA (the isola binary; default: build target/release/isola).
# Needs root. Installs podman, runc and python3 with apt-get when missing.
# Prints the results and writes its section of bench/RESULTS.md unless --no-write.
set -euo pipefail

args=("$@")
rounds=20
idle=10
many=50
write=1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
results=$here/RESULTS.md

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
while [ $# -gt 0 ]; do
    case $1 in
    -n) rounds=${2:?-n needs a number}; shift 2 ;;
    -c) idle=${2:?-c needs a number}; shift 2 ;;
    -m) many=${2:?-m needs a number}; shift 2 ;;
    -o) results=${2:?-o needs a file}; shift 2 ;;
    --no-write) write=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "engine.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
for v in "$rounds" "$idle" "$many"; do
    case $v in '' | *[!0-9]* | 0) echo "engine.sh: -n, -c and -m want positive numbers" >&2; exit 2 ;; esac
done

log() { printf 'engine.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (containers need namespaces, mounts and cgroups)"

# --- tools -------------------------------------------------------------------------------------
need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Detached monitors outlive the `isola run -d` that started them; become their subreaper.
if [ -z "${ENGINE_BENCH_SUBREAPER:-}" ]; then
    export ENGINE_BENCH_SUBREAPER=1
    exec python3 -c '
import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.stderr.write("engine.sh: warning: cannot become a subreaper\n")
os.execv("/bin/bash", ["bash"] + sys.argv[1:])
' "${BASH_SOURCE[0]}" "${args[@]}"
fi

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -z "${ISOLA:-}" ]; then
    log "building isola (release)"
    (cd "$repo" && cargo build --release -q -p isola)
    ISOLA=$repo/target/release/isola
fi
[ -x "$ISOLA" ] || die "no isola binary at $ISOLA"
RUNC=$(command -v runc)

# --- scratch space, cleaned up whatever happens ------------------------------------------------
work=$(mktemp -d /tmp/eb.XXXXXX)
iroot=$work/r
irun=$work/rr
isola() { "$ISOLA" --root "$iroot" --run-root "$irun" "$@"; }
pm() {
    podman --root "$work/proot" --runroot "$work/prun" --tmpdir "$work/ptmp" --storage-driver overlay "$@"
}
# PIDs of our monitors (isola) and conmons (podman), from their command lines.
monitor_pids() {
    # The key goes through the environment: in awk's arguments it would match awk itself.
    ps -eo pid=,args= | K=" --root $iroot --run-root $irun __monitor " awk 'index($0, ENVIRON["K"]) { print $1 }'
}
conmon_pids() {
    ps -eo pid=,comm=,args= | awk -v k="$work/" '$2 == "conmon" && index($0, k) { print $1 }'
}
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    cd /
    if [ -n "${work:-}" ] && [ -d "$work" ]; then
        # shellcheck disable=SC2046 # one word per ID
        if [ -d "$iroot" ]; then isola rm -f $(isola ps -aq 2>/dev/null) >/dev/null 2>&1 || true; fi
        # shellcheck disable=SC2046
        if [ -d "$work/proot" ]; then pm rm -f -t 0 $(pm ps -aq 2>/dev/null) >/dev/null 2>&1 || true; fi
        for p in $(monitor_pids) $(conmon_pids); do kill -KILL "$p" 2>/dev/null || true; done
        awk -v p="$work/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
            while read -r m; do umount -l "$m" 2>/dev/null || true; done
        rm -rf --one-file-system "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cat >"$work/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
EOF
cat >"$work/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$work/proot"
runroot = "$work/prun"
EOF
export CONTAINERS_CONF=$work/containers.conf CONTAINERS_STORAGE_CONF=$work/storage.conf
mkdir -p "$work/ptmp" "$work/tmp"
export TMPDIR=$work/tmp

# --- the image ---------------------------------------------------------------------------------
isola image builtin >/dev/null
isola save -o "$work/busybox.tar" busybox
pm load -q -i "$work/busybox.tar" >/dev/null
pm image exists busybox || die "podman did not load the busybox image"
image_id=$(isola images -q | head -n 1)
busybox_version=$( (isola run --rm busybox busybox 2>/dev/null || true) | head -n 1 | awk '{ print $2 }')

# Open file descriptors of this script, compared at the end.
fd_count_start=$(find /proc/$$/fd -mindepth 1 -maxdepth 1 | wc -l)

# --- 1. run --rm -------------------------------------------------------------------------------
declare -A wall
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) * 1000 }'; }
# measure NAME CMD...: runs CMD once, appends its wall time (ms) to wall[NAME]; CMD must succeed
# and print nothing.
measure() {
    local name=$1 t0 t1
    shift
    t0=$EPOCHREALTIME
    if ! "$@" >"$work/out" 2>&1; then
        cat "$work/out" >&2
        die "$name failed: $*"
    fi
    t1=$EPOCHREALTIME
    [ ! -s "$work/out" ] || { cat "$work/out" >&2; die "$name printed something: $*"; }
    wall[$name]+="$(ms "$t0" "$t1") "
}
round() {
    measure isola isola run --rm busybox true
    measure podman pm run --rm --network none busybox true
}
log "run --rm: warm-up (2 rounds)"
round
round
wall=()
for ((i = 1; i <= rounds; i++)); do
    round
    log "round $i/$rounds: isola $(awk '{ print $NF }' <<<"${wall[isola]}") ms, podman $(awk '{ print $NF }' <<<"${wall[podman]}") ms"
done
[ -z "$(isola ps -aq)" ] || die "isola run --rm left containers: $(isola ps -aq | tr '\n' ' ')"
[ -z "$(pm ps -aq)" ] || die "podman run --rm left containers"

# stats "v1 v2 ...": prints "min median max" (median of an even count = mean of the middle two).
stats() {
    tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk -v f="${2:-%.1f}" '
        { v[NR] = $1 }
        END {
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf f " " f " " f "\n", v[1], m, v[NR]
        }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
verdict() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? "met" : "missed" }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.2f", k / 1024 }'; }
declare -A wmin wmed wmax
for k in isola podman; do read -r "wmin[$k]" "wmed[$k]" "wmax[$k]" < <(stats "${wall[$k]}"); done
run_ratio=$(ratio "${wmed[isola]}" "${wmed[podman]}")

# --- 2. memory of idle containers --------------------------------------------------------------
# kib PID FIELD: a field of /proc/PID/smaps_rollup, in KiB.
kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/smaps_rollup"; }
# mem_of PIDS...: sets mem_rss, mem_pss, mem_uss to "min median max" (KiB) over PIDS.
mem_of() {
    local p rss="" pss="" uss=""
    for p in "$@"; do
        rss+="$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$p/status") "
        pss+="$(kib "$p" Pss) "
        uss+="$(($(kib "$p" Private_Clean) + $(kib "$p" Private_Dirty))) "
    done
    mem_rss=$(stats "$rss" %d)
    mem_pss=$(stats "$pss" %d)
    mem_uss=$(stats "$uss" %d)
}
# wait_count N CMD: waits (up to 10 s) until CMD prints N lines.
wait_count() {
    local n=$1 i
    shift
    for ((i = 0; i < 1000; i++)); do
        [ "$("$@" | wc -l)" = "$n" ] && return 0
        sleep 0.01
    done
    return 1
}

log "memory: $idle idle isola containers"
ids=()
for ((i = 0; i < idle; i++)); do ids+=("$(isola run -d busybox sleep 1000)"); done
wait_count "$idle" monitor_pids || die "expected $idle monitors, found $(monitor_pids | wc -l)"
sleep 1 # let every monitor settle into its idle loop
mapfile -t mons < <(monitor_pids)
mem_of "${mons[@]}"
read -r _ mon_rss mon_rss_max <<<"$mem_rss"
read -r _ mon_pss _ <<<"$mem_pss"
read -r _ mon_uss _ <<<"$mem_uss"
monitor_threads=$(awk '$1 == "Threads:" { print $2 }' "/proc/${mons[0]}/status")
# Where one monitor's RSS goes: its smaps, mapping by mapping.
exe=$(readlink "/proc/${mons[0]}/exe")
breakdown=$(awk -v exe="$exe" '
    function split_in(c, r) { R[c] += r; P[c] += (rss ? pss * r / rss : 0) }
    /^[0-9a-f]+-[0-9a-f]+ / { perm = $2; name = $6; next }
    $1 == "Rss:" { rss = $2; next }
    $1 == "Pss:" { pss = $2; next }
    $1 == "Private_Dirty:" {
        pd = $2
        if (name == exe && perm ~ /x/) c = "1 isola: code"
        else if (name == exe) {
            # Its dirty pages were written at load (relocated .data.rel.ro, .data, .bss); the rest is
            # read-only data (.rodata, .eh_frame, ...), shared with every process of the binary.
            split_in("3 isola: data written at load (relocations, .data, .bss)", pd)
            split_in("2 isola: read-only data", rss - pd)
            next
        }
        else if (name ~ /\.so/) c = "4 shared libraries (libc, libm, libgcc_s, ld.so)"
        else if (name == "[heap]" || name == "") c = "5 heap and anonymous mappings"
        else if (name == "[stack]") c = "6 stack"
        else c = "7 other (" name ")"
        R[c] += rss; P[c] += pss
    }
    END { for (c in R) if (R[c] > 0) printf "%s\t%d\t%d\n", c, R[c], P[c] }' "/proc/${mons[0]}/smaps" | sort)
isola rm -f "${ids[@]}" >/dev/null
wait_count 0 monitor_pids || die "monitors left after rm -f"
all_ids=("${ids[@]}")

log "memory: $idle idle podman containers (conmon)"
pids=()
for ((i = 0; i < idle; i++)); do pids+=("$(pm run -d --network none busybox sleep 1000)"); done
wait_count "$idle" conmon_pids || die "expected $idle conmons, found $(conmon_pids | wc -l)"
sleep 1
mapfile -t cons < <(conmon_pids)
mem_of "${cons[@]}"
read -r _ con_rss _ <<<"$mem_rss"
read -r _ con_pss _ <<<"$mem_pss"
read -r _ con_uss _ <<<"$mem_uss"
pm rm -f -t 0 "${pids[@]}" >/dev/null
wait_count 0 conmon_pids || die "conmons left after podman rm -f"
rss_verdict=$(verdict "$mon_rss" 2048)

# --- 3. many containers, then leak checks ------------------------------------------------------
zombies() { ps -eo stat=,pid=,ppid=,comm= | awk '$1 ~ /^Z/ { print $2, $3, $4 }'; }
zombies_before=$(zombies) # those of other work on the machine are not ours
log "$many idle isola containers: run -d"
ids=()
t0=$EPOCHREALTIME
for ((i = 0; i < many; i++)); do ids+=("$(isola run -d busybox sleep 1000)"); done
t1=$EPOCHREALTIME
n_monitors=$(monitor_pids | wc -l)
n_running=$(isola ps -q | wc -l)
[ "$n_running" = "$many" ] || die "$many containers started, isola ps shows $n_running running"
log "$many idle isola containers: rm -f"
t2=$EPOCHREALTIME
isola rm -f "${ids[@]}" >/dev/null
t3=$EPOCHREALTIME
all_ids+=("${ids[@]}")
start_ms=$(ms "$t0" "$t1")
rm_ms=$(ms "$t2" "$t3")
/bin/true # lets bash reap what it has been given

checks=()
check() { # check NAME DETAIL: PASS when DETAIL is empty
    if [ -z "$2" ]; then
        checks+=("PASS|$1|")
    else
        checks+=("FAIL|$1|$(tr '\n' ' ' <<<"$2" | cut -c1-300)")
    fi
}
check "no monitor process (\`__monitor\` with these roots)" "$(monitor_pids)"
left=""
for p in /proc/[0-9]*; do
    r=$(readlink "$p/root" 2>/dev/null) || continue
    case $r in "$work"/*) left+="${p#/proc/} " ;; esac
done
check "no process whose root is under the scratch directory (container processes)" "$left"
check "no mount under the roots (/proc/self/mountinfo)" \
    "$(awk -v a="$iroot/" -v b="$irun/" 'index($5, a) == 1 || index($5, b) == 1 { print $5 }' /proc/self/mountinfo)"
left=""
for id in "${all_ids[@]}"; do
    for d in /sys/fs/cgroup/*/isola/"$id" /sys/fs/cgroup/isola/"$id"; do [ -e "$d" ] && left+="$d "; done
done
check "no cgroup directory of the $((idle + many)) detached containers under /sys/fs/cgroup/*/isola/" "$left"
for d in "$iroot/containers" "$irun/containers" "$irun/runtime"; do
    check "empty ${d/#$work/SCRATCH}" "$(ls -A "$d" 2>/dev/null)"
done
check "\`isola ps -a\` empty" "$(isola ps -aq)"
left=""
while read -r pid ppid comm; do
    [ -n "$pid" ] || continue
    grep -qx "$pid $ppid $comm" <<<"$zombies_before" && continue
    # Ours: children of this script (the subreaper of every monitor) or of anything under our roots.
    if [ "$ppid" = $$ ] || tr '\0' ' ' <"/proc/$ppid/cmdline" 2>/dev/null | grep -qF "$work/"; then
        left+="$pid($comm, parent $ppid) "
    fi
done < <(zombies)
check "no zombie process" "$left"
left=$(find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 -lname "$work/*" -printf '%h/%l\n' 2>/dev/null || true)
check "no file descriptor open under the scratch directory (any process)" "$left"
fd_count_end=$(find /proc/$$/fd -mindepth 1 -maxdepth 1 | wc -l)
[ "$fd_count_end" = "$fd_count_start" ] && left="" || left="$fd_count_start before, $fd_count_end after"
check "file descriptors of this script unchanged ($fd_count_end)" "$left"
n_fail=$(printf '%s\n' "${checks[@]}" | grep -c '^FAIL' || true)

# --- report ------------------------------------------------------------------------------------
# shellcheck disable=SC2016 # backquotes are Markdown
report() {
    echo "### 1. \`run --rm busybox true\` ($rounds interleaved rounds, after two warm-up rounds)"
    echo
    echo '| command | wall min (ms) | wall median (ms) | wall max (ms) |'
    echo '|---|---:|---:|---:|'
    echo "| \`isola run --rm busybox true\` | ${wmin[isola]} | ${wmed[isola]} | ${wmax[isola]} |"
    echo "| \`podman run --rm --network none busybox true\` | ${wmin[podman]} | ${wmed[podman]} | ${wmax[podman]} |"
    echo
    echo "- isola / podman (median): **${run_ratio}×** (target ≤ 0.25×: **$(verdict "$run_ratio" 0.25)**)"
    echo
    echo "### 2. Memory per idle container ($idle \`run -d busybox sleep 1000\` at once)"
    echo
    echo '| process | RSS median (MiB) | PSS median (MiB) | USS median (MiB) |'
    echo '|---|---:|---:|---:|'
    echo "| isola monitor (\`isola … __monitor ID\`, $monitor_threads thread(s)) | $(mib "$mon_rss") | $(mib "$mon_pss") | $(mib "$mon_uss") |"
    echo "| Podman's conmon (reference) | $(mib "$con_rss") | $(mib "$con_pss") | $(mib "$con_uss") |"
    echo
    echo "- monitor RSS median $(mib "$mon_rss") MiB (max $(mib "$mon_rss_max")): target ≤ 2 MiB **$rss_verdict**"
    echo "- PSS counts each shared page divided by the number of processes mapping it; USS is what this"
    echo "  process alone maps (Private_Clean + Private_Dirty): the memory its exit would free."
    echo
    echo "Where one monitor's RSS goes (\`/proc/PID/smaps\`, $(basename "$exe") $(($(stat -c %s "$exe") / 1024)) KiB on disk):"
    echo
    echo '| mappings | RSS (KiB) | PSS (KiB) |'
    echo '|---|---:|---:|'
    while IFS=$'\t' read -r c r p; do echo "| ${c#? } | $r | $p |"; done <<<"$breakdown"
    echo
    echo "### 3. $many idle containers started and removed"
    echo
    echo '| phase | wall total (s) | per container (ms) |'
    echo '|---|---:|---:|'
    echo "| $many × \`isola run -d busybox sleep 1000\`, one after another | $(awk -v m="$start_ms" 'BEGIN { printf "%.2f", m / 1000 }') | $(awk -v m="$start_ms" -v n="$many" 'BEGIN { printf "%.1f", m / n }') |"
    echo "| \`isola rm -f\` of the $many, one command | $(awk -v m="$rm_ms" 'BEGIN { printf "%.2f", m / 1000 }') | $(awk -v m="$rm_ms" -v n="$many" 'BEGIN { printf "%.1f", m / n }') |"
    echo
    echo "While the $many ran: $n_monitors monitor processes, $n_running containers in \`isola ps\`. After \`rm -f\`:"
    echo
    local c
    for c in "${checks[@]}"; do
        IFS='|' read -r v name detail <<<"$c"
        echo "- **$v**: $name${detail:+ — $detail}"
    done
    echo
    echo "Leak checks: $((${#checks[@]} - n_fail)) of ${#checks[@]} passed."
}

echo
report
echo

[ "$write" = 1 ] || exit 0

# --- RESULTS.md --------------------------------------------------------------------------------
# This script owns the lines between its two markers and nothing else (the sections of bench/load.sh
# and bench/runtime.sh, and notes written by hand, are left as they are). A file without the markers
# gets the section appended.
load_marker='<!-- Everything below this line is kept when bench/load.sh rewrites the file. -->'
begin='<!-- bench/engine.sh: begin (this section is rewritten by bench/engine.sh) -->'
end='<!-- bench/engine.sh: end -->'
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$repo" status --porcelain -- crates 2>/dev/null | head -n 1)
[ -n "$dirty" ] && rev="$rev (with uncommitted changes in crates/)"
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
    cgroups="cgroup v2"
elif [ -d /sys/fs/cgroup/unified ]; then
    cgroups="hybrid (v1 controllers, cgroup2 at /sys/fs/cgroup/unified)"
else
    cgroups="cgroup v1"
fi
section=$work/section.md
{
    echo "$begin"
    echo
    echo "# \`isola\` engine against Podman"
    echo
    echo "Written by \`bench/engine.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'). Lower is better."
    echo
    echo "## Machine"
    echo
    echo "- $(nproc) CPUs ($cpu_model), $(free -g | awk '/^Mem:/ { print $2 }') GiB memory, kernel $(uname -r)"
    echo "- cgroups: $cgroups; roots on $(df -T "$work" | awk 'NR == 2 { print $2 }') ($work)"
    echo "- load average (1, 5, 15 min) at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- isola $rev (release build); $(podman --version) with $("$RUNC" --version | head -n 1) and $(conmon --version 2>/dev/null | head -n 1)"
    echo "- image: busybox of \`isola image builtin\` (${image_id:-?}, BusyBox ${busybox_version:-?}); Podman loads it from \`isola save\`"
    echo
    echo "## Results"
    echo
    report
    echo
    echo "## Reproduce"
    echo
    echo '```sh'
    echo "sudo bench/engine.sh         # -n ROUNDS (default 20), -c IDLE (10), -m MANY (50), -o FILE, --no-write"
    echo '```'
    echo
    echo "$end"
} >"$section"

if [ ! -f "$results" ]; then
    { echo "$load_marker"; echo; cat "$section"; } >"$results"
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
[ "$n_fail" = 0 ] || exit 1
