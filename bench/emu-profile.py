#!/usr/bin/env python3
"""Where an emulated guest spends its instructions, by guest kernel function.

Usage: bench/emu-profile.py [--since EARLIER] PROFILE.vcpuN VMLINUX [TOP]
PROFILE.vcpuN comes from running a VM under the software CPU with CORRAL_EMU_PROFILE=PROFILE
in the VMM's environment (e.g. exported before the daemon starts); VMLINUX is the guest
kernel with its symbols (/var/lib/corral/kernels/vmlinux). User-space addresses are counted
as one line, "[user space]". EARLIER is a copy of the same profile file taken at some moment
(e.g. when the guest finished booting): only what ran after it is counted.
When PROFILE.vcpuN.stats exists (the vCPU's block-cache and TLB counters), its figures are
printed first, as ratios per guest instruction (whole run, not since EARLIER).
"""
import os
import bisect
import subprocess
import sys


def kernel_symbols(vmlinux):
    out = subprocess.run(["nm", "-n", "--defined-only", vmlinux], check=True,
                         capture_output=True, text=True).stdout
    addrs, names = [], []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            addrs.append(int(parts[0], 16))
            names.append(parts[2])
    return addrs, names


def read_profile(path):
    counts = {}
    with open(path) as f:
        for line in f:
            count, rip = line.split()
            counts[int(rip, 16)] = int(count)
    return counts


def main():
    args = sys.argv[1:]
    earlier = {}
    if args[:1] == ["--since"]:
        earlier = read_profile(args[1])
        args = args[2:]
    if len(args) < 2:
        sys.exit(__doc__)
    top = int(args[2]) if len(args) > 2 else 40
    addrs, names = kernel_symbols(args[1])
    per_function = {}
    total = 0
    for rip, count in read_profile(args[0]).items():
        count -= earlier.get(rip, 0)
        if count > 0:
            total += count
            if rip < 1 << 47:
                name = "[user space]"
            else:
                i = bisect.bisect_right(addrs, rip) - 1
                name = names[i] if i >= 0 else hex(rip)
            per_function[name] = per_function.get(name, 0) + count
    if not total:
        sys.exit("empty profile")
    print_stats(args[0] + ".stats")
    print(f"{total} guest instructions")
    rows = sorted(per_function.items(), key=lambda kv: -kv[1])[:top]
    for name, count in rows:
        print(f"{100 * count / total:6.2f}%  {count:>12}  {name}")


def print_stats(path):
    if not os.path.exists(path):
        return
    with open(path) as f:
        stats = dict((k, int(v)) for k, v in (line.split() for line in f if line.strip()))
    n = stats.pop("instructions", 0)
    if not n:
        return
    fetches = stats.get("fetches", 0)
    print(f"whole run: {n} guest instructions, {n / max(fetches, 1):.2f} per block lookup")
    for name, value in stats.items():
        print(f"  {name:<10} {value:>12}  ({value / n:.4f} per instruction)")


main()
