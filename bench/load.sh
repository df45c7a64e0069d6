#!/usr/bin/env bash
# Benchmark: how fast `isola load` unpacks a real Debian image, next to `podman load` of the same
# archive and `tar -xzf` of the same layer (the limit set by gzip decompression).
#
#   bench/load.sh [-n RUNS] [-o RESULTS.md] [--no-write] [--host-fs]
#
# Input: the Debian bookworm minbase rootfs tarball of scripts/test-assets.sh (found through
# $ISOLA_TEST_DEBIAN_TAR, else ${ISOLA_TEST_CACHE:-/var/cache/isola-test}/assets.env, else built by
# that script). From it the bench makes a docker-archive (manifest.json, config, one gzip layer, as
# `docker save` and registries ship images) with `isola import` + `isola save`.
#
# All contenders write to one fresh ext4 file system (Debian's mkfs.ext4 defaults, journal included)
# on a loop device, so that earlier work on the host's file system cannot skew the numbers: on an ext4
# without a journal, creating inodes soon after deleting many walks the recently deleted ones, and that
# cost grows with every run. `--host-fs` measures on the file system of BENCH_TMP instead.
#
# Each round runs every contender once, in the same order (isola, podman, tar, pigz), so machine drift
# is shared. Before each run its destination is removed and `sync` flushes the previous run's writes;
# the run itself starts from an empty store. The input archive stays in the page cache (one unmeasured
# warm-up round). Wall time is read by bash; CPU time (user+sys, children included) and peak RSS by
# /usr/bin/time.
#
# Environment: ISOLA (the isola binary; default: build target/release/isola), BENCH_TMP (where scratch
# directories go; default /var/tmp, which should be on the same file system as a real store).
# Needs root. Prints a table and writes bench/RESULTS.md unless --no-write.
set -euo pipefail

runs=5
write=1
loop_fs=1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
results=$here/RESULTS.md

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
while [ $# -gt 0 ]; do
    case $1 in
    -n) runs=${2:?-n needs a number}; shift 2 ;;
    -o) results=${2:?-o needs a file}; shift 2 ;;
    --no-write) write=0; shift ;;
    --host-fs) loop_fs=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "load.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
case $runs in '' | *[!0-9]* | 0) echo "load.sh: -n wants a positive number" >&2; exit 2 ;; esac

log() { printf 'load.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
[ "$(id -u)" = 0 ] || die "run as root (isola and podman unpack with owners and device nodes)"

# --- tools -------------------------------------------------------------------------------------
need=()
[ -x /usr/bin/time ] || need+=(time)
command -v pigz >/dev/null || need+=(pigz)
command -v podman >/dev/null || need+=(podman)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ -z "${ISOLA:-}" ]; then
    log "building isola (release)"
    (cd "$repo" && cargo build --release -q -p isola)
    ISOLA=$repo/target/release/isola
fi
[ -x "$ISOLA" ] || die "no isola binary at $ISOLA"

# --- input -------------------------------------------------------------------------------------
debian_tar=${ISOLA_TEST_DEBIAN_TAR:-}
if [ -z "$debian_tar" ]; then
    env_file=${ISOLA_TEST_CACHE:-/var/cache/isola-test}/assets.env
    if [ -f "$env_file" ]; then
        debian_tar=$(sed -n 's/^ISOLA_TEST_DEBIAN_TAR=//p' "$env_file")
    fi
fi
if [ -z "$debian_tar" ] || [ ! -f "$debian_tar" ]; then
    [ -x "$repo/scripts/test-assets.sh" ] || [ -f "$repo/scripts/test-assets.sh" ] ||
        die "no Debian tarball and no scripts/test-assets.sh to build one"
    log "building the Debian tarball with scripts/test-assets.sh"
    debian_tar=$(bash "$repo/scripts/test-assets.sh" | tail -n 1)
fi
[ -f "$debian_tar" ] || die "Debian tarball $debian_tar is missing"

# --- scratch space, cleaned up whatever happens ------------------------------------------------
work=$(mktemp -d "${BENCH_TMP:-/var/tmp}/isola-bench.XXXXXX")

# Unmounts whatever is mounted beneath $1 (podman's overlay driver may leave mounts), deepest first.
unmount_under() {
    local m
    awk -v p="$1/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
}
# Removes a scratch directory completely, including any mounts beneath it.
clear_dir() {
    [ -e "$1" ] || return 0
    unmount_under "$1"
    rm -rf --one-file-system "$1"
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "${work:-}" ] && [ -d "$work" ] && clear_dir "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The file system every contender writes to.
out_fs=$work/fs
mkdir "$out_fs"
if [ "$loop_fs" = 1 ]; then
    truncate -s 4G "$work/fs.img"
    # Inode tables and journal are written now, not by a background thread during the runs.
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$work/fs.img"
    mount -o loop "$work/fs.img" "$out_fs"
fi

# podman: throwaway configuration and storage, nothing read from or written to the host's.
mkdir -p "$out_fs/podman-tmp"
cat >"$work/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
EOF
cat >"$work/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$out_fs/podman-root"
runroot = "$out_fs/podman-run"
EOF
export CONTAINERS_CONF=$work/containers.conf CONTAINERS_STORAGE_CONF=$work/storage.conf
export TMPDIR=$out_fs/podman-tmp
podman_load() {
    podman --root "$out_fs/podman-root" --runroot "$out_fs/podman-run" --tmpdir "$out_fs/podman-libpod" \
        --storage-driver overlay load -q -i "$archive" >/dev/null
}
podman_clear() {
    clear_dir "$out_fs/podman-root"
    clear_dir "$out_fs/podman-run"
    clear_dir "$out_fs/podman-libpod"
}

# --- the archive -------------------------------------------------------------------------------
log "making the docker-archive from $debian_tar"
"$ISOLA" --root "$work/mk-root" --run-root "$work/mk-run" import -q "$debian_tar" bench/debian:bookworm >/dev/null
"$ISOLA" --root "$work/mk-root" --run-root "$work/mk-run" save -q -o "$work/oci.tar" bench/debian:bookworm
mkdir "$work/mk-tar"
tar -xf "$work/oci.tar" -C "$work/mk-tar"
[ -f "$work/mk-tar/manifest.json" ] || die "isola save wrote no manifest.json"
# A docker-archive is manifest.json plus the files it names: leave out the OCI index so that every
# tool reads the archive as docker-archive.
archive=$work/debian-docker.tar
(cd "$work/mk-tar" && tar --owner=0 --group=0 --numeric-owner -cf "$archive" manifest.json blobs)
layer_rel=$(sed -n 's/.*"Layers":\["\([^"]*\)".*/\1/p' "$work/mk-tar/manifest.json")
[ -n "$layer_rel" ] || die "cannot find the layer in manifest.json"
layer=$work/layer.tar.gz
mv "$work/mk-tar/$layer_rel" "$layer"
gzip -t "$layer" 2>/dev/null || die "the layer is not gzip"
clear_dir "$work/mk-root"
clear_dir "$work/mk-run"
clear_dir "$work/mk-tar"
rm -f "$work/oci.tar"

archive_bytes=$(stat -c %s "$archive")
layer_bytes=$(stat -c %s "$layer")
raw_bytes=$(gzip -dc "$layer" | wc -c)
entries=$(tar -tzf "$layer" | wc -l)

# --- contenders --------------------------------------------------------------------------------
names=(isola podman tar pigz)
declare -A label=(
    [isola]="isola load -i ARCHIVE"
    [podman]="podman load -i ARCHIVE"
    [tar]="tar -xzf LAYER"
    [pigz]="pigz -dc LAYER \\| tar -x"
)
prepare() {
    case $1 in
    isola) clear_dir "$out_fs/isola-root"; clear_dir "$out_fs/isola-run" ;;
    podman) podman_clear ;;
    tar | pigz) clear_dir "$out_fs/out"; mkdir "$out_fs/out" ;;
    esac
}
run() {
    case $1 in
    isola) "$ISOLA" --root "$out_fs/isola-root" --run-root "$out_fs/isola-run" load -q -i "$archive" >/dev/null ;;
    podman) podman_load ;;
    tar) tar -xzf "$layer" -C "$out_fs/out" ;;
    pigz) pigz -dc "$layer" | tar -x -C "$out_fs/out" ;;
    esac
}
export -f run podman_load
export ISOLA out_fs archive layer

# One measured run of contender $1: writes "wall cpu rss_kb" to $work/measure.out. It runs in the
# script's own shell, so that an interrupted script waits for the run before cleaning up.
measure() {
    local t0 t1 usr sys rss
    prepare "$1"
    sync
    t0=$EPOCHREALTIME
    # shellcheck disable=SC2016 # $1 is for the inner shell
    /usr/bin/time -f '%U %S %M' -o "$work/time.out" bash -c 'run "$1"' _ "$1" ||
        die "$1 failed (see above)"
    t1=$EPOCHREALTIME
    read -r usr sys rss <"$work/time.out"
    awk -v a="$t0" -v b="$t1" -v u="$usr" -v s="$sys" -v m="$rss" \
        'BEGIN { printf "%.3f %.2f %d\n", b - a, u + s, m }' >"$work/measure.out"
}

# Warm-up round: fills the page cache with the archive and the binaries, and checks every contender
# works and unpacks the same tree.
log "warm-up round"
for n in "${names[@]}"; do measure "$n"; done
"$ISOLA" --root "$out_fs/isola-root" --run-root "$out_fs/isola-run" images | grep -q bench/debian ||
    die "isola load did not record the image"
podman --root "$out_fs/podman-root" --runroot "$out_fs/podman-run" --tmpdir "$out_fs/podman-libpod" \
    --storage-driver overlay images --format '{{.Repository}}:{{.Tag}}' | grep -q bench/debian ||
    die "podman load did not record the image"
isola_files=$(find "$out_fs/isola-root/layers" -mindepth 2 | wc -l)
tar_files=$(find "$out_fs/out" -mindepth 1 | wc -l)
[ "$isola_files" = "$tar_files" ] ||
    log "warning: isola unpacked $isola_files entries, tar $tar_files"

declare -A wall cpu rss
for n in "${names[@]}"; do wall[$n]=""; cpu[$n]=""; rss[$n]=""; done
for ((i = 1; i <= runs; i++)); do
    line="round $i/$runs:"
    for n in "${names[@]}"; do
        measure "$n"
        read -r w c m <"$work/measure.out"
        wall[$n]+="$w "
        cpu[$n]+="$c "
        rss[$n]+="$m "
        line+=" $n ${w}s"
    done
    log "$line"
done
for n in "${names[@]}"; do prepare "$n"; done
clear_dir "$out_fs/out"

# --- statistics --------------------------------------------------------------------------------
# stats "v1 v2 ...": prints "min median max" (median of an even count = mean of the middle two).
stats() {
    tr ' ' '\n' <<<"$1" | sed '/^$/d' | sort -g | awk '
        { v[NR] = $1 }
        END {
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "%.3f %.3f %.3f\n", v[1], m, v[NR]
        }'
}
declare -A wmin wmed wmax cmed rmax
for n in "${names[@]}"; do
    read -r "wmin[$n]" "wmed[$n]" "wmax[$n]" < <(stats "${wall[$n]}")
    read -r _ "cmed[$n]" _ < <(stats "${cpu[$n]}")
    read -r _ _ "rmax[$n]" < <(stats "${rss[$n]}")
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { print (r <= t) ? "met" : "missed" }'; }
r_tar=$(ratio "${wmed[isola]}" "${wmed[tar]}")
r_pigz=$(ratio "${wmed[isola]}" "${wmed[pigz]}")
r_podman=$(ratio "${wmed[isola]}" "${wmed[podman]}")
v_tar=$(verdict "$r_tar" 1.2)
v_podman=$(verdict "$r_podman" 0.5)
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

# shellcheck disable=SC2016 # backquotes are Markdown
table() {
    printf '| command | wall min (s) | wall median (s) | wall max (s) | CPU user+sys median (s) | peak RSS max (MiB) |\n'
    printf '|---|---:|---:|---:|---:|---:|\n'
    for n in "${names[@]}"; do
        printf '| `%s` | %s | %s | %s | %s | %s |\n' "${label[$n]}" "${wmin[$n]}" "${wmed[$n]}" \
            "${wmax[$n]}" "${cmed[$n]}" "$(awk -v k="${rmax[$n]}" 'BEGIN { printf "%.1f", k / 1024 }')"
    done
}
# shellcheck disable=SC2016 # backquotes are Markdown
ratios() {
    printf -- '- isola / `tar -xzf`: **%s×** (target ≤ 1.2×: %s)\n' "$r_tar" "$v_tar"
    printf -- '- isola / `podman load`: **%s×** (target ≤ 0.5×: %s)\n' "$r_podman" "$v_podman"
    printf -- '- isola / `pigz -dc LAYER | tar -x` (reference): %s×\n' "$r_pigz"
}

echo
table
echo
ratios
echo

[ "$write" = 1 ] || exit 0

# --- RESULTS.md --------------------------------------------------------------------------------
# Anything below the marker line in an existing RESULTS.md (notes written by hand) is kept.
marker='<!-- Everything below this line is kept when bench/load.sh rewrites the file. -->'
notes=""
if [ -f "$results" ]; then
    notes=$(awk -v m="$marker" 'found { print } $0 == m { found = 1 }' "$results")
fi
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$repo" status --porcelain -- crates 2>/dev/null | head -n 1)
[ -n "$dirty" ] && rev="$rev (with uncommitted changes in crates/)"
if [ "$loop_fs" = 1 ]; then
    fs_desc="a fresh ext4 (mkfs.ext4 defaults, with journal) on a loop device, on the host's $(findmnt -n -o FSTYPE -T "$work")"
else
    fs_desc="the host's $(findmnt -n -o FSTYPE -T "$out_fs") (--host-fs)"
fi
{
    echo "# \`isola load\` benchmark"
    echo
    echo "Written by \`bench/load.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'). Lower is better."
    echo
    echo "## Machine"
    echo
    echo "- $(nproc) CPUs ($cpu_model), $(free -g | awk '/^Mem:/ { print $2 }') GiB memory"
    echo "- kernel $(uname -r), output written to $fs_desc"
    echo "- load average (1, 5, 15 min) at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- isola $rev; $(podman --version); $(tar --version | head -n 1); pigz $(pigz --version 2>&1 | awk '{ print $2 }')"
    echo
    echo "## Image"
    echo
    echo "- Debian bookworm minbase root file system ($(basename "$debian_tar")), as a docker-archive with one gzip layer"
    echo "- archive $(mib "$archive_bytes"), layer $(mib "$layer_bytes") compressed, $(mib "$raw_bytes") uncompressed, $entries entries"
    echo
    echo "## Results ($runs interleaved rounds, after one warm-up round)"
    echo
    table
    echo
    ratios
    echo
    echo "Each run starts from an empty store or directory; \`sync\` runs before (outside) each measurement."
    echo "Wall time is the elapsed time of the command; CPU time includes its child processes."
    echo
    echo "## Reproduce"
    echo
    echo '```sh'
    echo "sudo bench/load.sh          # -n RUNS (default 5), -o FILE, --no-write, --host-fs"
    echo '```'
    echo
    echo "$marker"
    [ -n "$notes" ] && printf '%s\n' "$notes"
} >"$results"
log "wrote $results"
