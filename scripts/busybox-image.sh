#!/usr/bin/env bash
# Makes the `busybox` base image from Debian's busybox-static, with no network:
# a root filesystem with /bin/busybox and one symlink per applet, minimal /etc, imported as
# busybox:latest (or the NAME given as $1).
#
#   scripts/busybox-image.sh [NAME]         # uses $CORRAL or target/release/corral or corral
#
# A debootstrap root filesystem is imported the same way:
#   debootstrap --variant=minbase bookworm /tmp/rootfs && tar -C /tmp/rootfs -c . | corral image import - debian:bookworm
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-busybox:latest}
corral=${CORRAL:-}
if [ -z "$corral" ]; then
  for c in target/release/corral target/debug/corral "$(command -v corral || true)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then corral=$c; break; fi
  done
fi
[ -n "$corral" ] || { echo "busybox-image: no corral binary (build it or set CORRAL)" >&2; exit 1; }
bb=/bin/busybox
[ -x "$bb" ] || { echo "busybox-image: $bb missing (apt-get install busybox-static)" >&2; exit 1; }
file -L "$bb" 2>/dev/null | grep -q 'statically linked' || ldd "$bb" 2>&1 | grep -q 'not a dynamic' ||
  { echo "busybox-image: $bb is not static (install busybox-static)" >&2; exit 1; }

root=$(mktemp -d /tmp/corral-busybox.XXXXXX)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,tmp,root,home,var/tmp,run}
chmod 1777 "$root/tmp" "$root/var/tmp"
chmod 700 "$root/root"
cp "$bb" "$root/bin/busybox"
# One symlink per applet, at the path busybox itself reports (bin/ls, usr/bin/env, …); made
# by perl (Debian's perl-base is essential) in one process, since ~400 forks of ln take seconds.
"$bb" --list-full | ROOT="$root" perl -ne '
  chomp; next if $_ eq "bin/busybox" || $_ eq "";
  my $p = "$ENV{ROOT}/$_"; (my $d = $p) =~ s{/[^/]+$}{};
  -d $d or mkdir $d or die "mkdir $d: $!\n";
  unlink $p; symlink("/bin/busybox", $p) or die "symlink $p: $!\n";'

[ -e "$root/bin/sh" ] || ln -s /bin/busybox "$root/bin/sh"
cat > "$root/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$root/etc/group" <<'G'
root:x:0:
nogroup:x:65534:
G
echo 'hosts: files dns' > "$root/etc/nsswitch.conf"
: > "$root/etc/hosts"
# Fixed owners and times so the image ID depends only on busybox itself.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$root" -cf "$root.tar" .
trap 'rm -rf "$root" "$root.tar"' EXIT
"$corral" image import "$root.tar" "$name"
