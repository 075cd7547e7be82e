#!/bin/busybox sh
# /init of the demo VM: report what the guest sees, then power off.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
echo "corral-demo-vm: $(/bin/busybox uname -sr), $(/bin/busybox nproc) vCPU, $(/bin/busybox grep MemTotal /proc/meminfo)"
/bin/busybox ls /sys/bus/virtio/devices >/dev/null 2>&1 && echo "corral-demo-vm: virtio devices: $(/bin/busybox ls /sys/bus/virtio/devices | /bin/busybox wc -l)"
/bin/busybox poweroff -f
