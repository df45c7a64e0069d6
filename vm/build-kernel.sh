#!/usr/bin/env bash
# Build isola's guest kernel from Debian's linux-source-6.1 with isola's own
# minimal config (vm/kernel.config merged over `make allnoconfig`), and cache it.
#
#   vm/build-kernel.sh [--out DIR]
#
# Result: <root>/<hash16>/{vmlinux,bzImage,config,version}, where <root> is
# DIR if --out is given, else ${ISOLA_CACHE:-/var/cache/isola}/kernel, and
# <hash16> is the first 16 hex digits of sha256(vm/kernel.config, the
# linux-source-6.1 package version, this script). The last line printed on
# stdout is that directory; progress goes to stderr.
#
# Idempotent (exits at once when the result is cached), atomic (built into a
# temporary directory, then renamed), serialised per hash with flock.
#
# Environment:
#   ISOLA_CACHE              cache root (default /var/cache/isola)
#   ISOLA_KERNEL_JOBS        make -j value (default: nproc)
#   ISOLA_KERNEL_KEEP_BUILD  1 = keep the scratch source tree (path printed)
#   TMPDIR                   where the scratch tree goes (~1.5 GB)
set -euo pipefail

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
VM_DIR=$(dirname "$SCRIPT_PATH")
FRAGMENT=$VM_DIR/kernel.config
SRC_PKG=linux-source-6.1
SRC_TARBALL=/usr/src/linux-source-6.1.tar.xz
BUILD_DEPS=("$SRC_PKG" build-essential bc bison flex libelf-dev libssl-dev xz-utils)

log() { printf 'build-kernel: %s\n' "$*" >&2; }
die() { printf 'build-kernel: error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,12p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

OUT_ROOT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --out) [ $# -ge 2 ] || usage; OUT_ROOT=$2; shift 2 ;;
        --out=*) OUT_ROOT=${1#--out=}; shift ;;
        -h|--help) usage 0 ;;
        *) log "unknown argument: $1"; usage ;;
    esac
done
[ -n "$OUT_ROOT" ] || OUT_ROOT=${ISOLA_CACHE:-/var/cache/isola}/kernel
[ -f "$FRAGMENT" ] || die "missing config fragment $FRAGMENT"

# --- build dependencies (quiet, idempotent) -----------------------------------------
pkg_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}
missing=()
for p in "${BUILD_DEPS[@]}"; do pkg_installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing packages (${missing[*]}); run as root or install them"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -f "$SRC_TARBALL" ] || die "$SRC_TARBALL not found after installing $SRC_PKG"

# --- cache key ----------------------------------------------------------------
SRC_VERSION=$(dpkg-query -W -f='${Version}' "$SRC_PKG")
HASH=$( {
    printf 'kernel.config\0'; cat "$FRAGMENT"
    printf '\0%s\0%s\0' "$SRC_PKG" "$SRC_VERSION"
    printf 'build-kernel.sh\0'; cat "$SCRIPT_PATH"
} | sha256sum | cut -c1-16)
DEST=$OUT_ROOT/$HASH
ARTEFACTS=(vmlinux bzImage config version)

is_complete() {
    local f
    for f in "${ARTEFACTS[@]}"; do [ -s "$1/$f" ] || return 1; done
}

if is_complete "$DEST"; then
    echo "$DEST"
    exit 0
fi

mkdir -p "$OUT_ROOT"
exec 9>"$OUT_ROOT/.lock-$HASH"
if ! flock -n 9; then
    log "another build of $HASH is running; waiting for it"
    flock 9
fi
if is_complete "$DEST"; then   # built by whoever held the lock
    echo "$DEST"
    exit 0
fi

# --- scratch tree -------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/isola-kernel.XXXXXX")
STAGE=""
cleanup() {
    [ -n "$STAGE" ] && rm -rf "$STAGE"
    if [ "${ISOLA_KERNEL_KEEP_BUILD:-0}" = 1 ]; then
        log "kept build tree $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

log "building $SRC_PKG $SRC_VERSION with $(basename "$FRAGMENT") -> $DEST"
log "unpacking $SRC_TARBALL"
tar -xf "$SRC_TARBALL" -C "$WORK"
KSRC=$WORK/linux-source-6.1
[ -f "$KSRC/Makefile" ] || die "unexpected tarball layout (no $KSRC/Makefile)"
BUILD_LOG=$WORK/build.log
MAKE=(make -C "$KSRC" ARCH=x86_64)

run_logged() {   # run a command with its output in the build log; on failure show the tail
    if ! "$@" >>"$BUILD_LOG" 2>&1; then
        log "failed: $*"
        tail -n 40 "$BUILD_LOG" >&2
        exit 1
    fi
}

# Every line of the fragment must hold in the final .config:
#   CONFIG_X=v            -> the .config has exactly CONFIG_X=v
#   # CONFIG_X is not set -> the .config does not enable CONFIG_X
check_config() {
    local cfg=$1 line sym got bad=0
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
            CONFIG_*=*)
                sym=${line%%=*}
                got=$(grep -E "^$sym=" "$cfg" || true)
                if [ "$got" != "$line" ]; then
                    log "config: asked $line, got ${got:-$sym unset (dropped: unmet dependency or unknown symbol)}"
                    bad=1
                fi ;;
            "# CONFIG_"*" is not set")
                sym=${line#\# }; sym=${sym%% *}
                got=$(grep -E "^$sym=" "$cfg" || true)
                if [ -n "$got" ]; then
                    log "config: asked $sym off, got $got (selected by another option)"
                    bad=1
                fi ;;
        esac
    done < "$FRAGMENT"
    return $bad
}

log "configuring (allnoconfig + merge_config.sh -m kernel.config + olddefconfig)"
run_logged "${MAKE[@]}" allnoconfig
( cd "$KSRC" && ARCH=x86_64 scripts/kconfig/merge_config.sh -m .config "$FRAGMENT" ) >>"$BUILD_LOG" 2>&1 \
    || { tail -n 40 "$BUILD_LOG" >&2; die "merge_config.sh failed"; }
run_logged "${MAKE[@]}" olddefconfig
check_config "$KSRC/.config" || die "the kernel config does not match vm/kernel.config (see above)"

JOBS=${ISOLA_KERNEL_JOBS:-$(nproc)}
log "compiling vmlinux and bzImage with -j$JOBS (several minutes; log: $BUILD_LOG)"
start=$(date +%s)
run_logged "${MAKE[@]}" -j"$JOBS" vmlinux bzImage
log "compiled in $(( $(date +%s) - start )) s"
check_config "$KSRC/.config" || die "the kernel config changed during the build (see above)"

grep -q '^CONFIG_PVH=y' "$KSRC/.config" || die "CONFIG_PVH is off: vmlinux would not boot with PVH"
readelf -n "$KSRC/vmlinux" 2>/dev/null | grep -q 'Xen' \
    || die "vmlinux has no Xen/PVH ELF note (XEN_ELFNOTE_PHYS32_ENTRY): QEMU could not PVH-boot it"

RELEASE=$("${MAKE[@]}" -s kernelrelease)

# --- publish atomically ---------------------------------------------------------
STAGE=$(mktemp -d "$OUT_ROOT/.tmp-$HASH.XXXXXX")
cp "$KSRC/vmlinux" "$STAGE/vmlinux"
cp "$KSRC/arch/x86/boot/bzImage" "$STAGE/bzImage"
cp "$KSRC/.config" "$STAGE/config"
printf '%s\n' "$RELEASE" > "$STAGE/version"
chmod 0755 "$STAGE"
chmod 0644 "$STAGE"/*
sync -f "$STAGE/vmlinux" 2>/dev/null || true
rm -rf "$DEST"   # only an incomplete leftover can be here (checked above, under the lock)
mv -T "$STAGE" "$DEST"
STAGE=""
log "kernel $RELEASE: vmlinux $(stat -c %s "$DEST/vmlinux") bytes, bzImage $(stat -c %s "$DEST/bzImage") bytes"
echo "$DEST"
