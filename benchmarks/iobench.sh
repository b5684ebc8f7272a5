#!/usr/bin/env bash
# The I/O request path, hvctl against QEMU 7.2 (Debian) and the host's own limit on this host's
# /dev/kvm, with the iobench guest: thin calls of `hvctl bench` (README), one per set of cells this
# script measured before bench existed. Block: 4 KiB random reads of a 64 MiB pattern file at QD1
# and QD16 (completions polled; QEMU also at a 1 ms polling limit), and an open loop of 400 000
# reads/s with up to 32 in flight and a completion interrupt per read, hvctl's coalescing on and
# off. Network: ICMP echo round trips and a 1514-byte UDP stream on a TAP. Two VMs sharing one
# side core (QEMU: two processes, iothreads on the same CPU). Each call prints its table.
# Usage: benchmarks/iobench.sh (as root, after `make`); env REPEAT (runs per cell, default 3),
# BENCH_DIR (a directory for each call's JSON record, NAME.json).
set -euo pipefail
cd "$(dirname "$0")/.."
hvctl=.build/release/hvctl
[ -x "$hvctl" ] || { echo "iobench.sh: run 'make' first" >&2; exit 1; }
repeat=${REPEAT:-3} out=${BENCH_DIR:-}

bench() {
    local name=$1; shift
    echo "## $name"
    "$hvctl" bench --repeat "$repeat" ${out:+--json "$out/$name.json"} "$@"
    echo
}

bench closed-loop --qd 1,16 --mode notify,poll,hybrid --peer host,qemu --qemu-poll-max-ns 1000000 --requests 100000
bench open-loop-irq --qd 32 --rate 400000 --irq --irq-coalesce on,off --mode notify,poll,hybrid --peer qemu \
    --requests 200000
bench network --workload net-rr,net-stream --mode notify,poll,hybrid --peer qemu --requests 20000
bench two-vms-one-side-core --vms 2 --side-cores 1 --qd 1,16 --mode poll,hybrid --peer host,qemu --requests 100000
