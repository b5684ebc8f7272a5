#!/usr/bin/env bash
# Interrupt redirection, hvctl --irq-redirect off/on/auto vs QEMU 7.2 (Debian) on this host's /dev/kvm:
# `hvctl bench --workload redirect` (iobench's redirect.c: 2 vCPUs, one block queue whose
# lowest-priority MSI lets either vCPU take its completions; vCPU 0 runs QD1 reads at CPL3, vCPU 1
# first halts, then spins, and on this 2-CPU host the vCPUs and a side core then take turns). Two
# calls: completions polled (the interrupts are taken, not waited for), and --irq (each read waits
# for its interrupt, as an interrupt-driven driver). Each prints bench's table and the phases'.
# Usage: benchmarks/redirect.sh (as root, after `make`); env REPEAT (runs per cell, default 3),
# REQUESTS (reads per phase, default 5000), BENCH_DIR (a directory for each call's JSON record).
set -euo pipefail
cd "$(dirname "$0")/.."
hvctl=.build/release/hvctl
[ -x "$hvctl" ] || { echo "redirect.sh: run 'make' first" >&2; exit 1; }
out=${BENCH_DIR:-}
for wait in polled irqwait; do
    echo "## $wait"
    "$hvctl" bench --workload redirect --mode notify,hybrid --irq-redirect off,on,auto --peer qemu \
        --requests "${REQUESTS:-5000}" --repeat "${REPEAT:-3}" $([ $wait = irqwait ] && echo --irq) \
        ${out:+--json "$out/redirect-$wait.json"}
    echo
done
