#!/usr/bin/env bash
# Builds the IPVS test guest (the host kernel has no IPVS): Debian's own kernel package
# (downloaded with apt-get, extracted, never installed) plus an initramfs that loads the IPVS,
# veth and bridge modules, mounts the host's root read-only over 9p and runs a command in it.
# Adapted from ../shared/ipvs-vm/build-guest.sh.
# Usage: build-guest.sh [OUTDIR]   default: $XDIR_GUEST_CACHE or <repo>/.cache/ipvs-guest
# Prints OUTDIR (vmlinuz, initrd.gz, version). Idempotent: rebuilds only when this script changed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-${XDIR_GUEST_CACHE:-$repo/.cache/ipvs-guest}}
stamp=$(sha256sum "$0" | cut -c1-16)
mkdir -p "$out"
if [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.gz" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$out"; exit 0
fi
# Concurrent builders (two test files at once) would clobber each other's output.
exec 9>"$out/.lock"; flock 9
if [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.gz" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$out"; exit 0
fi

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v busybox >/dev/null || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
command -v depmod >/dev/null || need+=(kmod)
command -v ipvsadm >/dev/null || need+=(ipvsadm)
if [ ${#need[@]} -gt 0 ]; then
  echo "build-guest: installing ${need[*]}" >&2
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
kpkg() { apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/.*Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1; }
pkg=$(kpkg)
[ -n "$pkg" ] || { apt-get update -qq >/dev/null; pkg=$(kpkg); }
[ -n "$pkg" ] || { echo "build-guest: cannot find Debian's linux-image-*-amd64 package (apt sources?)" >&2; exit 1; }
echo "build-guest: downloading $pkg" >&2
chmod 755 "$work"; (cd "$work" && apt-get download "$pkg" >/dev/null 2>&1) \
  || { echo "build-guest: apt-get download $pkg failed" >&2; exit 1; }
dpkg-deb -x "$work"/linux-image-*.deb "$work/k"
ver=$(ls "$work/k/lib/modules")
depmod -b "$work/k" "$ver"
mods="$work/k/lib/modules/$ver"

ir="$work/ir"
mkdir -p "$ir"/{bin,proc,sys,dev,host,xfer} "$ir/lib/modules/$ver"
cp "$(command -v busybox)" "$ir/bin/busybox"
# ip_vs pulls nf_conntrack & co. through modules.dep; veth + bridge build the DR topology.
wanted="virtio_pci 9pnet_virtio 9p veth bridge ip_vs ip_vs_rr ip_vs_wrr ip_vs_lc ip_vs_wlc ip_vs_sh ip_vs_mh"
for m in $wanted; do
  grep -E "/$m\.ko(\.[a-z]+)?:" "$mods/modules.dep" | tr ' :' '\n\n' | grep -E '\.ko(\.[a-z]+)?$' || true
done | sort -u | while read -r rel; do
  mkdir -p "$ir/lib/modules/$ver/$(dirname "$rel")"; cp "$mods/$rel" "$ir/lib/modules/$ver/$rel"
done
# libcrc32c asks the crypto API for crc32c at load time: a soft dependency modules.dep does not list.
rel=$(cd "$mods" && find . -name 'crc32c_generic.ko*' | head -1)
if [ -n "$rel" ]; then mkdir -p "$ir/lib/modules/$ver/$(dirname "$rel")"; cp "$mods/$rel" "$ir/lib/modules/$ver/$rel"; fi
cp "$mods/modules.dep" "$ir/lib/modules/$ver/"
cat > "$ir/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in crc32c_generic $wanted; do modprobe \$m 2>/dev/null || echo "guest: modprobe \$m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /host || echo "guest: cannot mount host root"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 xfer /xfer || echo "guest: cannot mount xfer"
for d in proc sys dev; do mount --bind /\$d /host/\$d; done
mount -t tmpfs tmpfs /host/tmp; mount -t tmpfs tmpfs /host/run
mkdir -p /host/tmp/xfer && mount --bind /xfer /host/tmp/xfer
# Named network namespaces (ip netns add) need /run/netns on a tmpfs, which /host/run is.
chroot /host /bin/sh /tmp/xfer/cmd.sh > /xfer/out.log 2>&1
echo \$? > /xfer/rc
sync; poweroff -f
INIT
chmod +x "$ir/init"
(cd "$ir" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$out/initrd.gz"
cp "$work/k/boot/vmlinuz-$ver" "$out/vmlinuz"
echo "$ver" > "$out/version"
echo "$stamp" > "$out/stamp"
echo "$out"
