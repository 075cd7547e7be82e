#!/bin/busybox sh
# /init of the demo's daemon VM: start corral's guest agent, then idle until the host asks the
# agent to power the guest off (`corral vm shutdown`).
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/corral-agent &
echo "corral-demo-vm: guest agent started"
while :; do /bin/busybox sleep 3600; done
