# Shared by the VM benchmarks: the naive baseline (Debian's stock kernel with a busybox
# initramfs) and the RESULTS.md section writer. Source it; the caller defines log() and die().

# Prints Debian's stock kernel: the newest /boot/vmlinuz-*, else the kernel of
# linux-image-cloud-amd64, fetched once with `apt-get download` into
# ${ISOLA_CACHE:-/var/cache/isola}/bench/stock. $1: a scratch directory.
stock_kernel() {
    local work=$1 k cache pkg deb
    k=$(ls -1t /boot/vmlinuz-* 2>/dev/null | head -n 1 || true)
    if [ -n "$k" ]; then echo "$k"; return; fi
    cache=${ISOLA_CACHE:-/var/cache/isola}/bench
    k=$(ls -1t "$cache"/stock/boot/vmlinuz-* 2>/dev/null | head -n 1 || true)
    if [ -n "$k" ]; then echo "$k"; return; fi
    pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    [ -n "$pkg" ] || die "cannot resolve linux-image-cloud-amd64 (apt-get update?)"
    log "fetching $pkg (the baseline's stock kernel) into $cache"
    mkdir -p "$cache"
    ( cd "$work" && apt-get -o APT::Sandbox::User=root download -q "$pkg" >/dev/null ) || die "apt-get download $pkg failed"
    deb=$(ls "$work"/*.deb | head -n 1)
    rm -rf "$cache/stock.tmp"
    dpkg-deb -x "$deb" "$cache/stock.tmp"
    rm -rf "$cache/stock"
    mv "$cache/stock.tmp" "$cache/stock"
    rm -f "$deb"
    ls -1t "$cache"/stock/boot/vmlinuz-* | head -n 1
}

# Builds a gzip newc initramfs whose /init (static busybox sh) prints ISOLA-BASELINE-UP and
# reboots; prints its path. $1: a scratch directory.
busybox_initrd() {
    local work=$1 busybox root out
    busybox=$(command -v busybox || echo /bin/busybox)
    if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is not static (install busybox-static)"; fi
    root=$work/baseline-root
    mkdir -p "$root"/{bin,dev,proc,sys}
    cp "$busybox" "$root/bin/busybox"
    ln -sf busybox "$root/bin/sh"
    [ -e "$root/dev/console" ] || mknod -m 600 "$root/dev/console" c 5 1
    printf '#!/bin/busybox sh\necho ISOLA-BASELINE-UP\nexec /bin/busybox reboot -f\n' > "$root/init"
    chmod 0755 "$root/init"
    out=$work/busybox.cpio.gz
    ( cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet ) | gzip -9 -n > "$out"
    echo "$out"
}

# "n median p90 min max" of the numbers on stdin.
stats() {
    sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "0 - - - -"; exit }
        m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        p = int(0.9 * NR); if (p < 0.9 * NR) p++
        printf "%d %.0f %.0f %.0f %.0f\n", NR, m, a[p], a[1], a[NR] }'
}
