#!/usr/bin/env bash
# Build and cache the inputs of isola's real-image tests.
#
# Produces a Debian bookworm minbase root filesystem, packed as a gzip tarball
# with numeric owners and extended attributes:
#
#   ${ISOLA_TEST_CACHE:-/var/cache/isola-test}/debian-bookworm-<hash12>.tar.gz
#
# where <hash12> is the start of sha256(this script + suite + variant + mirror),
# so changing any of them builds a new asset. The build happens in a temporary
# directory and is renamed into place, so a cached file is always complete.
# When the asset already exists the script exits at once. In both cases it
# prints the asset's path on stdout and writes ${ISOLA_TEST_CACHE}/assets.env:
#
#   ISOLA_TEST_DEBIAN_TAR=/var/cache/isola-test/debian-bookworm-<hash12>.tar.gz
#
# Needs root and debootstrap (scripts/install-deps.sh installs it).
set -euo pipefail

suite=bookworm
variant=minbase
cache=${ISOLA_TEST_CACHE:-/var/cache/isola-test}

log() { printf 'test-assets: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# The Debian mirror this machine already uses for $suite, so the build works
# wherever apt works; deb.debian.org otherwise.
detect_mirror() {
    local f uri
    # deb822 sources: the URIs of a stanza whose Suites list has $suite itself.
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk -v suite="$suite" '
            BEGIN { RS = ""; FS = "\n" }
            {
                uris = ""; ok = 0; deb = 0
                for (i = 1; i <= NF; i++) {
                    line = $i
                    if (line ~ /^[ \t]*#/) continue
                    if (line ~ /^Types:/ && line ~ /[ \t]deb([ \t]|$)/) deb = 1
                    if (line ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", line); split(line, u, /[ \t]+/); uris = u[1] }
                    if (line ~ /^Suites:/) {
                        n = split(line, s, /[ \t]+/)
                        for (j = 2; j <= n; j++) if (s[j] == suite) ok = 1
                    }
                }
                if (deb && ok && uris != "") { print uris; exit }
            }' "$f")
        if [ -n "$uri" ]; then
            printf '%s\n' "$uri"
            return
        fi
    done
    # One-line sources: "deb [options] URI SUITE COMPONENT...".
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri=$(awk -v suite="$suite" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' "$f")
        if [ -n "$uri" ]; then
            printf '%s\n' "$uri"
            return
        fi
    done
    printf '%s\n' http://deb.debian.org/debian
}

mirror=${ISOLA_TEST_MIRROR:-$(detect_mirror)}
script_path=$(readlink -f "${BASH_SOURCE[0]}")
hash=$({
    cat "$script_path"
    printf '\0%s\0%s\0%s\0' "$suite" "$variant" "$mirror"
} | sha256sum | cut -c1-12)
asset="$cache/debian-$suite-$hash.tar.gz"
envfile="$cache/assets.env"

write_env() {
    local tmp
    tmp=$(mktemp "$cache/.assets.env.XXXXXX")
    printf 'ISOLA_TEST_DEBIAN_TAR=%s\n' "$asset" >"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$envfile"
}

finish() {
    write_env
    printf '%s\n' "$asset"
    exit 0
}

# Fast path: nothing to do.
if [ -s "$asset" ]; then
    finish
fi

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap needs it)"
command -v debootstrap >/dev/null || die "debootstrap is not installed (run scripts/install-deps.sh)"
mkdir -p "$cache"

# One build at a time; a second caller waits and then finds the asset.
exec 9>"$cache/.lock"
flock 9
if [ -s "$asset" ]; then
    finish
fi

work=$(mktemp -d "$cache/.build.XXXXXX")
cleanup() {
    # debootstrap mounts proc and sys inside the target; never leave them.
    if [ -n "${work:-}" ] && [ -d "$work" ]; then
        awk -v w="$work" '$5 == w || index($5, w "/") == 1 { print $5 }' /proc/self/mountinfo |
            sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
        rm -rf --one-file-system "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started=$(date +%s)
log "building $suite/$variant from $mirror (this takes a few minutes)"
if ! debootstrap --variant="$variant" "$suite" "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    die "debootstrap failed (log above)"
fi
# Nothing may stay mounted in the tree we are about to pack.
if awk -v w="$work/rootfs" 'index($5, w "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
    die "debootstrap left mounts under $work/rootfs"
fi
# Caches that only make the asset bigger.
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"* 2>/dev/null || true

gzip_prog=gzip
if command -v pigz >/dev/null; then
    gzip_prog=pigz
fi
log "packing with $gzip_prog"
tar --create --numeric-owner --xattrs --xattrs-include='*' --sort=name \
    --directory="$work/rootfs" --use-compress-program="$gzip_prog -n" \
    --file="$work/rootfs.tar.gz" .
chmod 0644 "$work/rootfs.tar.gz"
mv -f "$work/rootfs.tar.gz" "$asset"

log "built $(du -h "$asset" | cut -f1) in $(($(date +%s) - started))s"
finish
