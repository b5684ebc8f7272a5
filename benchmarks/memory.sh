#!/usr/bin/env bash
# hvctl's own memory beyond guest RAM, with the API serving and metrics scraped: one VM from the
# command line, then N idle VMs from --config (the marginal cost per VM). Guest RAM is every
# mapping of exactly the guest's size (its Rss is what the guest touched, not hvctl's).
# Usage: benchmarks/memory.sh [VMS]   (run `make` first; prints KiB figures)
set -euo pipefail
cd "$(dirname "$0")/.."
vms=${1:-4}
hvctl=.build/release/hvctl
guest=guest-images/out/iobench.elf
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
guest_kib=$((64 * 1024))

# Rss of the process, of its guest RAM mappings, and the difference (hvctl's own), in KiB.
overhead() {
    awk -v guest="$guest_kib" '
        /^[0-9a-f]+-[0-9a-f]+ / { size = 0; inguest = 0; next }
        /^Size:/ { size = $2; inguest = (size == guest); next }
        /^Rss:/ { total += $2; if (inguest) ram += $2 }
        END { printf "rss=%d guest_ram=%d hvctl=%d\n", total, ram, total - ram }' "/proc/$1/smaps"
}

# An idle VM: iobench sleeps at its first mark for a minute (hold_ms), its queue set up.
run_and_measure() {
    local label=$1; shift
    "$hvctl" run "$@" --api-socket "$work/api.sock" >/dev/null 2>&1 &
    local pid=$!
    for _ in $(seq 100); do curl -sf --unix-socket "$work/api.sock" http://localhost/api/v1/vmm.ping >/dev/null && break; sleep 0.1; done
    sleep 1
    curl -sf --unix-socket "$work/api.sock" http://localhost/metrics >/dev/null
    curl -sf --unix-socket "$work/api.sock" http://localhost/api/v1/vm.counters >/dev/null
    echo "$label $(overhead $pid)"
    kill $pid; wait $pid 2>/dev/null || true
}

truncate -s 16M "$work/disk.img"
run_and_measure "vms=1" --kernel $guest --memory 64 --disk "path=$work/disk.img,readonly=on" \
    --cmdline "qd=1 requests=1 hold_ms=60000"
entries=""
for i in $(seq "$vms"); do
    entries="$entries${entries:+,}{\"name\":\"v$i\",\"kernel\":\"$guest\",\"memory\":64,\"cmdline\":\"qd=1 requests=1 hold_ms=60000\",\"disks\":[\"path=$work/disk.img,readonly=on\"]}"
done
echo "{\"vms\":[$entries]}" > "$work/vms.json"
run_and_measure "vms=$vms" --config "$work/vms.json"
