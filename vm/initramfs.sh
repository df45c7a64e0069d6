#!/usr/bin/env bash
# Build the guest initramfs: the static isola-agent as /init, plus the directories it mounts on.
#
#   vm/initramfs.sh [--agent PATH] OUT
#
#   OUT            where to write the gzip-compressed newc cpio archive
#   --agent PATH   use this agent binary (must be static) instead of building it with
#                  `cargo rustc -p isola-agent --release -- -C target-feature=+crt-static`
#
# Deterministic: entries sorted, owner 0:0, mtime 0, inode numbers renumbered, gzip -n, so the
# same agent binary gives the same bytes. No busybox, no shell in the guest: /init is the agent.
# /dev/console is included when run as root (the kernel opens it as init's stdio); without it
# the agent reopens /dev/console itself after mounting devtmpfs.
# Environment: CARGO_TARGET_DIR as for cargo (the agent is found in $CARGO_TARGET_DIR/release).
set -euo pipefail

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(dirname "$(dirname "$SCRIPT_PATH")")
log() { printf 'initramfs: %s\n' "$*" >&2; }
die() { printf 'initramfs: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,14p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//' >&2; exit "${1:-2}"; }

AGENT=""
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --agent) [ $# -ge 2 ] || usage; AGENT=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        -*) log "unknown option $1"; usage ;;
        *) [ -z "$OUT" ] || usage; OUT=$1; shift ;;
    esac
done
[ -n "$OUT" ] || usage
command -v cpio >/dev/null || die "cpio not found (apt-get install cpio)"

if [ -z "$AGENT" ]; then
    log "building the static agent (release, +crt-static)"
    ( cd "$REPO" && cargo rustc -q -p isola-agent --release --bin isola-agent -- -C target-feature=+crt-static ) >&2
    AGENT=${CARGO_TARGET_DIR:-$REPO/target}/release/isola-agent
fi
[ -x "$AGENT" ] || die "no agent binary at $AGENT"
# The guest has no dynamic loader and no libc: the agent must be static (static-pie is fine).
if file -b "$AGENT" | grep -q 'dynamically linked'; then
    die "$AGENT is dynamically linked; build it with -C target-feature=+crt-static"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/isola-initramfs.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ROOT=$WORK/root
mkdir -p "$ROOT"/{dev,proc,sys,tmp,run}
install -m 0755 "$AGENT" "$ROOT/init"
# Symbols are of no use in the guest and cost decompression time under TCG.
if command -v strip >/dev/null; then strip --strip-all "$ROOT/init"; fi
if [ "$(id -u)" = 0 ]; then mknod -m 600 "$ROOT/dev/console" c 5 1; fi
chmod 0755 "$ROOT" "$ROOT"/{dev,proc,sys,run}
chmod 1777 "$ROOT/tmp"
find "$ROOT" -exec touch -h -d @0 {} +

TMP_OUT=$OUT.tmp.$$
( cd "$ROOT" && find . -print0 | LC_ALL=C sort -z \
    | cpio --null -o -H newc --quiet --owner=0:0 --reproducible ) | gzip -9 -n > "$TMP_OUT"
mv -f "$TMP_OUT" "$OUT"
log "$OUT: $(stat -c %s "$OUT") bytes, agent $(stat -c %s "$AGENT") bytes ($(file -b "$AGENT" | cut -d, -f1-2))"
