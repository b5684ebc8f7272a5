#!/usr/bin/env bash
# Boot-time and memory benchmark, hvctl vs QEMU 7.2 (Debian), both as L3 hypervisors inside one
# nested-rig run. Usage: benchmarks/boot-time.sh  (after `make`; RUNS=N for more rounds).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
"$here/../guest-images/nested/run" --with-qemu --timeout 900 \
    --add "$here/boot-time-in-l2.sh:/bench.sh" -- env RUNS="${RUNS:-3}" sh /bench.sh | grep '^bench:'
