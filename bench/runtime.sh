#!/usr/bin/env bash
# Benchmark: how fast `isola-oci` starts a container, next to runc and crun on the same bundle.
#
#   bench/runtime.sh [-n ROUNDS] [-o RESULTS.md] [--no-write]
#
# The bundle: a busybox root file system (/bin/busybox of Debian's busybox-static and a link for
# each applet) and the config.json of `isola-oci spec` with args ["/bin/true"] and terminal false.
# Every runtime runs that same bundle, with its own state root (--root) under a scratch directory.
#
# Measured for each runtime: `run` (create, start, wait, delete: one command), and the phases
# `create`, `start` and `delete` as separate commands (between start and delete, unmeasured, the
# script waits for `state` to say stopped).
#
# crun 1.8 refuses to run on our hybrid cgroup hosts unless `/sys/fs/cgroup/unified` is out of its
# sight, so every runtime runs in the same wrapper:
#     unshare -m sh -c 'umount /sys/fs/cgroup/unified; exec "$@"' sh RUNTIME --root DIR COMMAND ID
# (a private mount namespace without the cgroup2 mount; the runtime is exec'd, so it is the same
# process). The wrapper alone (`... exec /bin/true`) is measured too, and isola-oci and runc also run
# without the wrapper (on the hybrid hierarchy), for reference. Ratios compare wrapped to wrapped;
# nothing is subtracted.
#
# Each round runs every measurement once, in the same order (wrapper, isola-oci, runc, crun, then
# the unwrapped ones), so that drift of a shared machine hits all alike; two unmeasured warm-up rounds
# come first. Wall time is read by bash (EPOCHREALTIME) around `/usr/bin/time`, which reads the
# peak RSS (ru_maxrss: the largest of the measured process and of the children it waited for; for
# `create` that is the runtime process alone, as the container's process outlives it).
#
# Environment: ISOLA_OCI (the isola-oci binary; default: build target/release/isola-oci).
# Needs root. Installs runc, crun, busybox-static, time and jq with apt-get when missing.
# Prints a table and writes its section of bench/RESULTS.md unless --no-write.
set -euo pipefail

args=("$@")
runs=20
write=1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
results=$here/RESULTS.md

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
while [ $# -gt 0 ]; do
    case $1 in
    -n) runs=${2:?-n needs a number}; shift 2 ;;
    -o) results=${2:?-o needs a file}; shift 2 ;;
    --no-write) write=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "runtime.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
case $runs in '' | *[!0-9]* | 0) echo "runtime.sh: -n wants a positive number" >&2; exit 2 ;; esac

log() { printf 'runtime.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the runtimes make namespaces, mounts and cgroups)"

# Containers started by `create` + `start` outlive the runtime process and are reparented to the
# nearest subreaper. PID 1 of our machines does not reap them, so the script makes itself a
# subreaper (bash reaps any child it is given) by re-executing through python3's prctl.
if [ -z "${RUNTIME_BENCH_SUBREAPER:-}" ] && command -v python3 >/dev/null; then
    export RUNTIME_BENCH_SUBREAPER=1
    exec python3 -c '
import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.stderr.write("runtime.sh: warning: cannot become a subreaper\n")
os.execv("/bin/bash", ["bash"] + sys.argv[1:])
' "${BASH_SOURCE[0]}" "${args[@]}"
fi

load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# --- tools -------------------------------------------------------------------------------------
need=()
[ -x /usr/bin/time ] || need+=(time)
command -v runc >/dev/null || need+=(runc)
command -v crun >/dev/null || need+=(crun)
command -v jq >/dev/null || need+=(jq)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ -z "${ISOLA_OCI:-}" ]; then
    log "building isola-oci (release)"
    (cd "$repo" && cargo build --release -q -p isola-oci)
    ISOLA_OCI=$repo/target/release/isola-oci
fi
[ -x "$ISOLA_OCI" ] || die "no isola-oci binary at $ISOLA_OCI"
RUNC=$(command -v runc)
CRUN=$(command -v crun)

# --- scratch space, cleaned up whatever happens ------------------------------------------------
# Short paths: a runtime's state root holds Unix sockets, whose paths have at most 107 bytes.
work=$(mktemp -d /tmp/rtb.XXXXXX)
cleanup() {
    local rc=$? rt d id
    trap - EXIT INT TERM
    cd /
    if [ -n "${work:-}" ] && [ -d "$work" ]; then
        for rt in isola runc crun; do
            d=$work/state-$rt
            [ -d "$d" ] || continue
            for id in "$d"/*; do
                [ -e "$id" ] || continue
                wrapped "$rt" delete --force "${id##*/}" >/dev/null 2>&1 || true
            done
        done
        awk -v p="$work/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r |
            while read -r m; do umount -l "$m" 2>/dev/null || true; done
        rm -rf --one-file-system "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the bundle --------------------------------------------------------------------------------
bundle=$work/bundle
mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/"{dev,proc,sys,tmp,etc,root}
cp /bin/busybox "$bundle/rootfs/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ -e "$bundle/rootfs/bin/$applet" ] || ln -s busybox "$bundle/rootfs/bin/$applet"
done
"$ISOLA_OCI" spec --bundle "$work"
jq '.process.args = ["/bin/true"] | .process.terminal = false' "$work/config.json" >"$bundle/config.json"
rm "$work/config.json"
mkdir "$work/state-isola" "$work/state-runc" "$work/state-crun"

declare -A bin=([isola]=$ISOLA_OCI [runc]=$RUNC [crun]=$CRUN)
cd "$bundle"
# shellcheck disable=SC2016 # "$@" is for the inner shell
wrapper='umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"'
# wrapped RT ARGS...: runtime RT with ARGS, in the wrapper (unmeasured uses).
wrapped() {
    local rt=$1
    shift
    unshare -m sh -c "$wrapper" sh "${bin[$rt]}" --root "$work/state-$rt" "$@"
}
# Waits (up to 5 s) until container $2 of runtime $1 has stopped.
wait_stopped() {
    local i
    for ((i = 0; i < 500; i++)); do
        "${bin[$1]}" --root "$work/state-$1" state "$2" 2>/dev/null | jq -e '.status == "stopped"' >/dev/null && return 0
        sleep 0.01
    done
    die "$1: container $2 did not stop"
}

# measure NAME CMD...: runs CMD once; appends its wall time (ms) and peak RSS (KiB) to the lists
# of NAME. CMD's output goes to $work/out; a failure stops the script.
declare -A wall rss
measure() {
    local name=$1 t0 t1 m
    shift
    t0=$EPOCHREALTIME
    if ! /usr/bin/time -f '%M' -o "$work/time.out" "$@" >"$work/out" 2>&1; then
        cat "$work/out" >&2
        die "$name failed: $*"
    fi
    t1=$EPOCHREALTIME
    read -r m <"$work/time.out"
    wall[$name]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) * 1000 }') "
    rss[$name]+="$m "
}

runtimes=(isola runc crun)
# The measurements of one round, in order.
round() {
    local rt id
    measure wrapper unshare -m sh -c "$wrapper" sh /bin/true
    for rt in "${runtimes[@]}"; do
        id=b$((++serial))
        measure "run/$rt" unshare -m sh -c "$wrapper" sh "${bin[$rt]}" --root "$work/state-$rt" run "$id"
    done
    for rt in "${runtimes[@]}"; do
        id=b$((++serial))
        measure "create/$rt" unshare -m sh -c "$wrapper" sh "${bin[$rt]}" --root "$work/state-$rt" create "$id"
        measure "start/$rt" unshare -m sh -c "$wrapper" sh "${bin[$rt]}" --root "$work/state-$rt" start "$id"
        wait_stopped "$rt" "$id"
        measure "delete/$rt" unshare -m sh -c "$wrapper" sh "${bin[$rt]}" --root "$work/state-$rt" delete "$id"
    done
    for rt in isola runc; do
        id=b$((++serial))
        measure "native-run/$rt" "${bin[$rt]}" --root "$work/state-$rt" run "$id"
    done
}
serial=0

log "warm-up (2 rounds)"
round
round
for k in "${!wall[@]}"; do wall[$k]=""; rss[$k]=""; done
for rt in "${runtimes[@]}"; do
    left=$(ls "$work/state-$rt")
    [ -z "$left" ] || die "$rt left state behind: $left"
done

for ((i = 1; i <= runs; i++)); do
    round
    line="round $i/$runs: run"
    for rt in "${runtimes[@]}"; do
        line+=" $rt $(awk '{ print $NF }' <<<"${wall[run/$rt]}")ms"
    done
    log "$line"
done

# --- statistics --------------------------------------------------------------------------------
# stats "v1 v2 ...": prints "min median max" (median of an even count = mean of the middle two).
stats() {
    tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '
        { v[NR] = $1 }
        END {
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%.1f %.1f %.1f\n", v[1], m, v[NR]
        }'
}
declare -A wmin wmed wmax rmed rmax
for k in "${!wall[@]}"; do
    read -r "wmin[$k]" "wmed[$k]" "wmax[$k]" < <(stats "${wall[$k]}")
    read -r _ "rmed[$k]" "rmax[$k]" < <(stats "${rss[$k]}")
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

declare -A label=([isola]=isola-oci [runc]=runc [crun]=crun)
rows=(wrapper)
for phase in run create start delete; do
    for rt in "${runtimes[@]}"; do rows+=("$phase/$rt"); done
done
rows+=(native-run/isola native-run/runc)
row_label() {
    case $1 in
    wrapper) echo "wrapper alone (\`unshare -m sh -c 'umount …; exec /bin/true'\`)" ;;
    native-run/*) echo "\`${label[${1#*/}]} run\`, no wrapper (hybrid cgroups)" ;;
    *) echo "\`${label[${1#*/}]} ${1%/*}\`" ;;
    esac
}
# shellcheck disable=SC2016 # backquotes are Markdown
table() {
    printf '| command | wall min (ms) | wall median (ms) | wall max (ms) | peak RSS median (MiB) | peak RSS max (MiB) |\n'
    printf '|---|---:|---:|---:|---:|---:|\n'
    for k in "${rows[@]}"; do
        printf '| %s | %s | %s | %s | %s | %s |\n' "$(row_label "$k")" "${wmin[$k]}" "${wmed[$k]}" \
            "${wmax[$k]}" "$(mib "${rmed[$k]}")" "$(mib "${rmax[$k]}")"
    done
}
verdict() { awk -v a="$1" -v b="$2" 'BEGIN { print (a <= b) ? "met" : "missed" }'; }
# shellcheck disable=SC2016 # backquotes are Markdown
ratios() {
    local phase
    for phase in run create start delete; do
        printf -- '- `%s`: isola-oci / runc **%s×**, isola-oci / crun **%s×**\n' "$phase" \
            "$(ratio "${wmed[$phase/isola]}" "${wmed[$phase/runc]}")" \
            "$(ratio "${wmed[$phase/isola]}" "${wmed[$phase/crun]}")"
    done
    printf -- '- `run` without the wrapper: isola-oci / runc **%s×**\n' \
        "$(ratio "${wmed[native-run/isola]}" "${wmed[native-run/runc]}")"
    printf -- '- target median `run` ≤ crun: **%s** (%s ms against %s ms)\n' \
        "$(verdict "${wmed[run/isola]}" "${wmed[run/crun]}")" "${wmed[run/isola]}" "${wmed[run/crun]}"
    printf -- '- target peak RSS ≤ crun (median, `run` / `create`): **%s** / **%s** (%s / %s MiB against %s / %s MiB)\n' \
        "$(verdict "${rmed[run/isola]}" "${rmed[run/crun]}")" \
        "$(verdict "${rmed[create/isola]}" "${rmed[create/crun]}")" \
        "$(mib "${rmed[run/isola]}")" "$(mib "${rmed[create/isola]}")" \
        "$(mib "${rmed[run/crun]}")" "$(mib "${rmed[create/crun]}")"
}

echo
table
echo
ratios
echo

[ "$write" = 1 ] || exit 0

# --- RESULTS.md --------------------------------------------------------------------------------
# This script owns the lines between its two markers and nothing else. They sit below the marker of
# bench/load.sh, which keeps everything below its marker when it rewrites the top of the file;
# notes written by hand go after the end marker.
load_marker='<!-- Everything below this line is kept when bench/load.sh rewrites the file. -->'
begin='<!-- bench/runtime.sh: begin (this section is rewritten by bench/runtime.sh) -->'
end='<!-- bench/runtime.sh: end -->'
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$repo" status --porcelain -- crates 2>/dev/null | head -n 1)
[ -n "$dirty" ] && rev="$rev (with uncommitted changes in crates/)"
section=$work/section.md
{
    echo "$begin"
    echo
    echo "# \`isola-oci\` against runc and crun"
    echo
    echo "Written by \`bench/runtime.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'). Lower is better."
    echo
    echo "## Machine"
    echo
    echo "- $(nproc) CPUs ($cpu_model), $(free -g | awk '/^Mem:/ { print $2 }') GiB memory, kernel $(uname -r)"
    echo "- cgroups: hybrid (v1 controllers, cgroup2 at /sys/fs/cgroup/unified), which crun 1.8 refuses"
    echo "- load average (1, 5, 15 min) at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- isola-oci $rev (release build); $("$RUNC" --version | head -n 1); $("$CRUN" --version | head -n 1)"
    echo
    echo "## Bundle"
    echo
    echo "- root file system: Debian's static busybox ($(/bin/busybox | head -n 1 | awk '{ print $2 }')) and a link per applet"
    echo "- config.json: \`isola-oci spec\` (namespaces pid, network, ipc, uts, mount, cgroup; runc's default"
    echo "  mounts, masked and read-only paths) with args \`[\"/bin/true\"]\` and terminal false"
    echo
    echo "## Results ($runs interleaved rounds, after two warm-up rounds)"
    echo
    echo "Every runtime command runs in the same wrapper, \`unshare -m sh -c 'umount /sys/fs/cgroup/unified; exec \"\$@\"' sh RUNTIME …\`,"
    echo "because crun 1.8 does not run on this hybrid host otherwise; the wrapper's own cost is the first row"
    echo "and is included in every wrapped row (not subtracted)."
    echo
    table
    echo
    ratios
    echo
    echo "\`run\` is create + start + wait + delete in one command. Peak RSS is the largest resident size of the"
    echo "measured process and of the children it waited for (\`/usr/bin/time\`); for \`create\` that is the"
    echo "runtime process alone. Between \`start\` and \`delete\` the script waits, unmeasured, for \`state\` to say stopped."
    echo
    echo "## Reproduce"
    echo
    echo '```sh'
    echo "sudo bench/runtime.sh        # -n ROUNDS (default 20), -o FILE, --no-write"
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
    has_load_marker=0
    grep -qxF "$load_marker" "$results" && has_load_marker=1
    {
        [ "$has_load_marker" = 1 ] || { echo; echo "$load_marker"; }
        echo
        cat "$section"
    } >>"$results"
fi
log "wrote $results"
