#!/usr/bin/env bash
# Builds the guest agent (isola-agent) as a static binary and puts it next to isola.
#
#   scripts/build-agent.sh [--profile debug|release|both]
#
# The guest has no libc and no loader, so the agent is linked with -C target-feature=+crt-static.
# It is built (always optimised: it is PID 1 of every guest, and it boots faster under TCG) in its
# own target directory, $CARGO_TARGET_DIR/agent-static (default target/agent-static), so that the
# flag does not touch the workspace's build, then copied atomically to
# $CARGO_TARGET_DIR/<profile>/isola-agent (both profiles by default), where isola looks for it
# (next to its own executable). Prints the path of the static build on stdout (the copies are
# logged on stderr).
#
# Run it after `cargo build`: building the workspace's binaries puts cargo's dynamically linked
# isola-agent in the same place, and so does `cargo test` once crates/agent has integration
# tests. Test runs therefore name the static build with ISOLA_AGENT (scripts/test.sh does).
set -euo pipefail

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(dirname "$(dirname "$SCRIPT_PATH")")
log() { printf 'build-agent: %s\n' "$*" >&2; }
die() { printf 'build-agent: error: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,16p' "$SCRIPT_PATH" | sed 's/^# \{0,1\}//' >&2; exit "${1:-2}"; }

profiles=(debug release)
while [ $# -gt 0 ]; do
    case "$1" in
        --profile)
            [ $# -ge 2 ] || usage
            case "$2" in
                debug|release) profiles=("$2") ;;
                both) profiles=(debug release) ;;
                *) usage ;;
            esac
            shift 2 ;;
        -h|--help) usage 0 ;;
        *) log "unknown argument $1"; usage ;;
    esac
done

cd "$REPO"
if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
fi
target=${CARGO_TARGET_DIR:-$REPO/target}
case "$target" in /*) ;; *) target=$REPO/$target ;; esac
static_dir=$target/agent-static

log "building isola-agent (release, +crt-static) in $static_dir"
CARGO_TARGET_DIR=$static_dir cargo rustc --quiet --locked -p isola-agent --release --bin isola-agent \
    -- -C target-feature=+crt-static -C strip=symbols >&2
built=$static_dir/release/isola-agent
[ -x "$built" ] || die "cargo did not produce $built"
# No program interpreter: the guest could not load it.
if LC_ALL=C readelf -lW "$built" 2>/dev/null | grep -q 'Requesting program interpreter'; then
    die "$built is dynamically linked despite +crt-static"
fi

for p in "${profiles[@]}"; do
    dest=$target/$p/isola-agent
    mkdir -p "$target/$p"
    cp -f "$built" "$dest.tmp.$$"
    mv -f "$dest.tmp.$$" "$dest"   # a new inode: cargo's own (hard-linked) copy is left alone
    log "copied to $dest"
done
log "isola-agent: $(stat -c %s "$built") bytes, static, sha256 $(sha256sum "$built" | cut -c1-16)"
echo "$built"
