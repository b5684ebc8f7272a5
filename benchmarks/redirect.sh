#!/usr/bin/env bash
# Interrupt redirection, hvctl --irq-redirect off/on/auto vs QEMU 7.2 (Debian) on this host's /dev/kvm,
# with the iobench guest's redirect workload (guest-images/iobench/redirect.c): 2 vCPUs, one
# block queue whose lowest-priority MSI lets either vCPU take its completions; vCPU 0 runs QD1
# reads at CPL3, vCPU 1 first halts ("halted" phase), then spins ("spinning" phase; on this
# 2-CPU host the vCPUs and a side core then take turns, so vCPUs are descheduled). Two ways to
# wait for a completion: "polled" (the ring; interrupts are taken but not waited for) and
# "irqwait" (each completion's interrupt first, as an interrupt-driven driver: the latency then
# includes its delivery). Vector 0x41, which KVM's lowest-priority hashing gives to vCPU 1. Per run: where the
# interrupts were taken in each phase, the reads' mean latency, KVM exits per request, vCPU 1's
# wake-ups from halt per request, and (hvctl) the share of interrupts sent through a
# redirected route. KVM's statistics are read live at the guest's start and end marks, which
# enclose both phases (hvctl: its control socket; QEMU: QMP query-stats).
# Usage: benchmarks/redirect.sh (as root, after `make`); env REPEAT (runs per configuration, the
# median by halted-phase latency; default 3), REQUESTS (reads per phase, default 5000),
# BENCH_LOG (raw lines, default /tmp/redirect.log). Prints a Markdown table.
set -euo pipefail
. "$(dirname "$0")/iobench-setup.sh"
repeat=${REPEAT:-3} requests=${REQUESTS:-5000}
# Long marks: with a side core and two vCPUs spinning, the sampler waits for a CPU.
base_cmdline="redirect=1 requests=$requests vector=0x41 hold_ms=1500"
export HVCTL=$hvctl

# measure NAME SOCKET COMMAND...: runs COMMAND, samples exits and halt wake-ups at the marks, and
# prints one "bench:" line with the guest's result fields and the deltas. Each run gets its own
# socket paths ($sock): a VMM still shutting down removes its own.
runs=0
measure() {
    local name=$1 socket=$2; shift 2
    runs=$((runs + 1)); sock=$work/run$runs
    socket=${socket/@SOCK@/$sock}
    local line sample0= sample1= result=
    while IFS= read -r line; do
        line=${line%$'\r'}
        case "$line" in
            *"iobench: start") sample0=$(python3 "$here/vcpu-stats.py" "$socket" exits halt_wakeup) || sample0= ;;
            *"iobench: end") sample1=$(python3 "$here/vcpu-stats.py" "$socket" exits halt_wakeup) || sample1= ;;
            *"iobench: result"*) result=${line#*result } ;;
            *"iobench: error"*) echo "bench: ${name// /:} guest-error ${line#*error}" ;;
        esac
    done < <("$@" 2>&1)
    # "exits=a,b halt_wakeup=c,d" at both marks: total exits and vCPU 1's wake-ups in between.
    local deltas
    deltas=$(echo "$sample0 $sample1" | awk '{
        for (i = 1; i <= NF; i++) { split($i, kv, "="); n = split(kv[2], v, ",");
            if (i <= NF / 2) { for (j = 1; j <= n; j++) first[kv[1], j] = v[j] } else { for (j = 1; j <= n; j++) last[kv[1], j] = v[j] } }
        if (NF < 4) { print "exits=- wakeups1=-"; exit }
        print "exits=" (last["exits", 1] + last["exits", 2] - first["exits", 1] - first["exits", 2]) \
              " wakeups1=" (last["halt_wakeup", 2] - first["halt_wakeup", 2]) }')
    local redirected=-
    # hvctl's --stats-json at exit: interrupts sent through a redirected route / all of them.
    [ -f "$work/stats.json" ] && redirected=$(python3 -c 'import json, sys
queue = json.load(open(sys.argv[1]))["devices"][0]["queues"][0]
print("%d/%d" % (queue["redirected"], queue["interrupts"]))' "$work/stats.json")
    rm -f "$work/stats.json"
    echo "bench: ${name// /:} $result $deltas redirected=$redirected"
}

hvctl_run() {
    "$hvctl" run --kernel "$guest" --memory 256 --cpus 2 --disk path="$work/disk.img" --cmdline "$cmdline" \
        --api-socket "$sock.api" --stats-json "$work/stats.json" "$@"
}
qemu_run() {
    qemu-system-x86_64 -enable-kvm -cpu host -smp 2 -m 256 -display none -no-reboot -nodefaults -serial stdio \
        -qmp unix:"$sock.qmp",server=on,wait=off -kernel "$guest" -append "$cmdline" \
        -object iothread,id=io0,poll-max-ns=32768 \
        -drive file="$work/disk.img",if=none,id=d0,format=raw,aio=io_uring -device virtio-blk-pci,drive=d0,iothread=io0
}

for run in $(seq "$repeat"); do
    for wait in polled irqwait; do
        cmdline=$base_cmdline; [ $wait = polled ] || cmdline="$base_cmdline irqwait=1"
        for mode in notify hybrid; do
            for setting in off on auto; do
                measure "$wait hvctl-$mode-redirect-$setting" "hvctl:@SOCK@.api" hvctl_run --io-mode $mode --irq-redirect $setting
            done
        done
        measure "$wait qemu-iothread" "qmp:@SOCK@.qmp" qemu_run
    done
done | tee "${BENCH_LOG:-/tmp/redirect.log}" | awk -v requests="$requests" '
$1 == "bench:" && $3 == "guest-error" { print "guest error in " $2 > "/dev/stderr"; next }
$1 == "bench:" {
    name = $2; if (!(name in runs)) order[++count] = name
    n = ++runs[name]
    for (i = 3; i <= NF; i++) { split($i, kv, "="); value[name, n, kv[1]] = kv[2] }
}
function median(name,    n, i, j, t, idx) {
    n = runs[name]
    for (i = 1; i <= n; i++) idx[i] = i
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
        if (value[name, idx[j], "halted_lat_avg_ns"] < value[name, idx[i], "halted_lat_avg_ns"]) { t = idx[i]; idx[i] = idx[j]; idx[j] = t }
    return idx[int((n + 1) / 2)]
}
END {
    print "| wait | run | halted: irqs vCPU0 / vCPU1 | halted: latency | spinning: irqs vCPU0 / vCPU1 | spinning: latency | exits/req | vCPU1 wake-ups/req | redirected | latency vs QEMU (halted, spinning) |"
    print "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    for (k = 1; k <= count; k++) {
        name = order[k]; i = median(name); req = value[name, i, "requests"]
        split(name, part, ":"); q = part[1] ":qemu-iothread"; qi = median(q)
        qhalted = value[q, qi, "halted_lat_avg_ns"]; qspinning = value[q, qi, "spinning_lat_avg_ns"]
        exits = value[name, i, "exits"] == "-" || !req ? "-" : sprintf("%.3f", value[name, i, "exits"] / req)
        wakes = value[name, i, "wakeups1"] == "-" || !req ? "-" : sprintf("%.3f", value[name, i, "wakeups1"] / req)
        printf "| %s | %s | %d / %d | %.1f µs | %d / %d | %.1f µs | %s | %s | %s | %.2f×, %.2f× |\n", part[1], part[2],
            value[name, i, "halted_cpu0"], value[name, i, "halted_cpu1"], value[name, i, "halted_lat_avg_ns"] / 1000,
            value[name, i, "spinning_cpu0"], value[name, i, "spinning_cpu1"], value[name, i, "spinning_lat_avg_ns"] / 1000,
            exits, wakes, value[name, i, "redirected"], qhalted ? value[name, i, "halted_lat_avg_ns"] / qhalted : 0,
            qspinning ? value[name, i, "spinning_lat_avg_ns"] / qspinning : 0
    }
}'
