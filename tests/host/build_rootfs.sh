#!/bin/sh
# Build the Debian 12 rootfs the host tests boot with systemd-nspawn (tests/host/conftest.py).
#   build_rootfs.sh DEST
# Built into DEST.tmp.<pid> and renamed to DEST only when complete, so an interrupted build is
# never booted; the next run removes the leftover and starts again. The mirror is the first
# Debian URI of the machine's own apt sources (the only package mirror some hosts can reach).
set -eu

DEST=$1
# libpam-systemd provides the logind polkitd depends on (debootstrap does not pick alternatives).
PACKAGES=systemd,systemd-sysv,dbus,libpam-systemd,polkitd,python3,python3-venv,procps

[ -d "$DEST" ] && exit 0
mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)[[:space:]]*$/\1/p' \
             /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1)
[ -n "$mirror" ] || mirror=$(sed -n 's/^deb[[:space:]]\{1,\}\(http[^[:space:]]*\/debian\)[[:space:]].*/\1/p' \
             /etc/apt/sources.list 2>/dev/null | head -n 1)
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$(dirname "$DEST")"
for old in "$DEST".tmp.*; do [ -e "$old" ] && rm -rf --one-file-system "$old"; done
tmp="$DEST.tmp.$$"
echo "building $DEST from $mirror (once; 1-7 minutes, ~260 MB)"
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$tmp" "$mirror" >"$tmp.log" 2>&1 || {
    tail -n 20 "$tmp.log"; rm -rf --one-file-system "$tmp"; exit 1; }
rm -f "$tmp.log"
# Boot quietly and fast in a container: no getty on a console nobody reads.
ln -sf /dev/null "$tmp/etc/systemd/system/console-getty.service"
echo "$PACKAGES" > "$tmp/.rollback-watcher-rootfs"
apt_clean="$tmp/var/cache/apt/archives"
rm -f "$apt_clean"/*.deb
mv "$tmp" "$DEST"
