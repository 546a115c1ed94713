#!/usr/bin/env bash
# Runs one shell command inside the IPVS guest (see build-guest.sh), in the caller's working
# directory, with the host's filesystem visible read-only and /tmp, /run fresh tmpfs. Prints the
# command's output and exits with its exit code. The guest has no network beyond what the command
# creates (veth, netns). Adapted from ../shared/ipvs-vm/run-in-guest.sh.
# Usage: run-in-guest.sh 'COMMAND'
# Env: GUEST_MEM (MiB, default 2048), GUEST_CPUS (default 2), GUEST_TIMEOUT (s, default 600),
#      GUEST_ACCEL (default: kvm when /dev/kvm works, else tcg), XDIR_GUEST_CACHE (see build-guest.sh).
# Output also lands in the guest's /tmp/xfer (shared read-write with the host for the run).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 'COMMAND'" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
guest=$("$here/build-guest.sh")
x=$(mktemp -d)
trap 'rm -rf "$x"' EXIT
# The guest's /tmp and /run are fresh tmpfs over the host's, so a working directory below them (a CI
# clone in /tmp, say) is shared on its own, read-only, and mounted at the same path in the guest.
cwd_share=()
case "$PWD" in
  /tmp|/tmp/*|/run|/run/*) cwd_share=(-virtfs "local,path=$PWD,mount_tag=cwd,security_model=none,readonly=on,multidevs=remap") ;;
esac
{ echo "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp CI=${CI:-} XDIR_IN_GUEST=1"
  echo "export XDIR_LOG_LEVEL=${XDIR_LOG_LEVEL:-warn}"
  if [ ${#cwd_share[@]} -gt 0 ]; then
    printf 'mkdir -p %q && mount -t 9p -o trans=virtio,version=9p2000.L,ro cwd %q || exit 96\n' "$PWD" "$PWD"
  fi
  printf 'cd %q || exit 97\n' "$PWD"
  printf '%s\n' "$1"; } > "$x/cmd.sh"
accel=${GUEST_ACCEL:-}
if [ -z "$accel" ]; then
  # Nested KVM did not work on the machines this was written on; software emulation (TCG) does.
  if [ -w /dev/kvm ] && grep -qE 'vmx|svm' /proc/cpuinfo; then accel=kvm; else accel=tcg; fi
fi
cpu=max; [ "$accel" = kvm ] && cpu=host
status=0
timeout "${GUEST_TIMEOUT:-600}" qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -m "${GUEST_MEM:-2048}" -smp "${GUEST_CPUS:-2}" \
  -nographic -no-reboot -kernel "$guest/vmlinuz" -initrd "$guest/initrd.gz" \
  -append "console=ttyS0 quiet panic=-1" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs local,path="$x",mount_tag=xfer,security_model=none \
  "${cwd_share[@]}" \
  > "$x/console.log" 2>&1 || status=$?
[ -f "$x/out.log" ] && cat "$x/out.log"
if [ -f "$x/rc" ]; then exit "$(cat "$x/rc")"; fi
[ "$status" = 124 ] && echo "guest timed out after ${GUEST_TIMEOUT:-600} s" >&2
echo "guest did not finish; console tail:" >&2; tail -20 "$x/console.log" >&2; exit 98
