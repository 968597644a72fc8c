#!/usr/bin/env bash
# Lay out a minimal container root filesystem made of bin/toybox.
#
# Usage: scripts/mkrootfs.sh DIR
#   TOYBOX=/path/to/toybox   binary to install (default: <repo>/bin/toybox;
#                            run `make tools` first)
#
# Result: DIR/bin/toybox plus one symlink per applet (DIR/bin/sh -> toybox,
# DIR/bin/sleep -> toybox, ...), DIR/sbin -> bin, empty DIR/{proc,dev,sys,run,
# root,var,tmp} (tmp is 1777), and a minimal DIR/etc/{passwd,group,hostname,
# hosts,resolv.conf}. The applet list comes from `toybox --list`, so it never
# drifts from the binary. DIR may exist; existing files are replaced. The
# rootfs can be used with `ctr run --rootfs DIR ...` or as an OCI bundle root.
set -euo pipefail

if [[ $# -ne 1 || -z "$1" ]]; then
	echo "usage: $0 DIR" >&2
	exit 2
fi
dir=$1
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
toybox=${TOYBOX:-$repo/bin/toybox}
if [[ ! -x $toybox ]]; then
	echo "mkrootfs: $toybox not found or not executable (run 'make tools' first, or set TOYBOX=)" >&2
	exit 1
fi

mkdir -p "$dir"/{bin,etc,proc,dev,sys,run,root,var,tmp}
chmod 1777 "$dir/tmp"
chmod 0700 "$dir/root"
# A copy, not a link: the rootfs must not depend on the host path of bin/.
install -m 0755 "$toybox" "$dir/bin/toybox"
for applet in $("$dir/bin/toybox" --list); do
	ln -sfn toybox "$dir/bin/$applet"
done
ln -sfn bin "$dir/sbin"

cat >"$dir/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$dir/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
echo toybox >"$dir/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$dir/etc/hosts"
: >"$dir/etc/resolv.conf"
