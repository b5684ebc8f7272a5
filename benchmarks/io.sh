#!/usr/bin/env bash
# I/O path benchmark, hvctl vs QEMU 7.2 (Debian) with an iothread and aio=io_uring, both as L3
# hypervisors in one nested-rig run: fio 4 KiB random reads at QD1/QD16 and an iperf3 TCP stream,
# with KVM exit counters sampled around each run, hvctl in each I/O mode. Usage: benchmarks/io.sh
# (after `make`); env RUNTIME (seconds per workload), CPUS (guest vCPUs), MODES (hvctl I/O modes:
# notify poll poll-nocoalesce hybrid hybrid-unpinned hybrid-window10ms hybrid-redirect-on
# hybrid-redirect-off), BENCH_LOG (where the raw "bench:" lines go
# as they come, default /tmp/io-bench.log, so a rig that dies keeps what it measured). Prints a table.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
make -s -C "$here/../guest-images" out/bench-initramfs.cpio >&2
# The L2 side of the TCP stream needs iperf3 and its libraries.
adds=()
for f in /usr/bin/iperf3 $(ldd /usr/bin/iperf3 | awk '$2 == "=>" && $3 ~ /^\// {print $3}'); do adds+=(--add "$f:$f"); done
"$here/../guest-images/nested/run" --with-qemu --memory 6144 --timeout 1200 "${adds[@]}" \
    --add "$here/../guest-images/out/bench-initramfs.cpio:/bench-initramfs.cpio" \
    --add "$here/io-in-l2.sh:/bench.sh" -- env RUNTIME="${RUNTIME:-10}" CPUS="${CPUS:-1}" MODES="${MODES:-notify poll poll-nocoalesce hybrid}" sh /bench.sh \
    | grep --line-buffered '^bench:' | tee "${BENCH_LOG:-/tmp/io-bench.log}" | awk -f "$here/io-summary.awk"
