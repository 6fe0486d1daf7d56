#!/bin/sh
# /init of the test VM's initramfs (busybox). It loads the modules listed in /modules/order, mounts
# the HOST root (9p tag "hostroot", read-only) under a tmpfs overlay, moves /proc, /sys and /dev into
# it and hands over to the job script named by testvm.job= on the kernel command line. The job script
# is generated per run by tests/vm/machine.py and powers the guest off when its command is done.
# Progress and failures go to the control port (ttyS2), which the host reads after qemu exits.
export PATH=/bin
ctl=/dev/ttyS2

fail() {
	echo "vm-init: $*"
	echo "init-failed $*" > "$ctl"
	poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for ko in $(cat /modules/order); do
	insmod "/modules/$ko" || fail "insmod $ko"
done

job=
for arg in $(cat /proc/cmdline); do
	case "$arg" in testvm.job=*) job=${arg#testvm.job=} ;; esac
done
[ -n "$job" ] || fail "no testvm.job= on the kernel command line"

mkdir -p /lower /rw /newroot
mount -t 9p -o ro,trans=virtio,version=9p2000.L,cache=loose,msize=512000 hostroot /lower || fail "mount the host root (9p)"
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "mount tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || fail "mount overlay"
[ -f "/newroot$job" ] || fail "job script $job is not visible in the guest"
for d in proc sys dev; do
	mount --move "/$d" "/newroot/$d" || fail "move /$d"
done
# A fresh /run, as after a real boot; /tmp stays the host's (read-only below, writable in the overlay).
mount -t tmpfs -o mode=0755 tmpfs /newroot/run || fail "mount /run"
echo "init-done $(cut -d' ' -f1 /newroot/proc/uptime)" > "/newroot$ctl"
exec switch_root /newroot /bin/sh "$job"
