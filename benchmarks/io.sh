#!/usr/bin/env bash
# The I/O path with Linux guests: `hvctl bench fio` run inside the nested rig's L2 (real KVM
# semantics; on this PVM host a Linux guest's kernel is emulated), hvctl in each mode against QEMU
# 7.2 with an iothread and aio=io_uring, fio's random reads and an iperf3 TCP stream, KVM's exits
# per request from its own statistics. Prints bench's table; the record goes to BENCH_JSON
# (default /tmp/io-bench.json; `hvctl bench-report` shows it again).
# Usage: benchmarks/io.sh [hvctl bench fio options] (after `make`); the defaults below come first,
# so options given here replace them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
make -s -C "$here/../guest-images" out/bench-initramfs.cpio >&2
json=${BENCH_JSON:-/tmp/io-bench.json}
defaults=(--workload randread,tcp-stream --qd 1,16 --mode hybrid,poll --peer qemu --duration 10 --repeat 1)
# In L2: the record is printed between two marks after the table, and cut out here. Through a
# pipe, bench's progress comes as a line per run rather than a line rewritten on L2's console.
in_l2='set -o pipefail; hvctl bench fio --kernel /guest/bzImage --initrd /bench-initramfs.cpio --json /tmp/bench.json \
"$@" 2>&1 | cat; status=$?; echo io-bench-record-start; cat /tmp/bench.json 2>/dev/null; echo io-bench-record-end; exit $status'
"$here/../guest-images/nested/run" --with-qemu --memory 6144 --timeout 3000 --add-binary /usr/bin/iperf3 \
    --add "$here/../guest-images/out/bench-initramfs.cpio:/bench-initramfs.cpio" -- \
    sh -c "$in_l2" sh "${defaults[@]}" "$@" |
    awk -v json="$json" '{ gsub(/\r/, "") } /^io-bench-record-start$/ { record = 1; printf "" > json; next }
        /^io-bench-record-end$/ { record = 0; next }
        record { print >> json; next } { print; fflush() }'
