#!/usr/bin/env bash
# I/O request path, hvctl vs QEMU 7.2 (Debian) on this host's /dev/kvm directly, with the iobench
# guest (guest-images/iobench: polled virtio drivers at CPL3, so it runs at native speed even where
# KVM emulates guest ring 0, as PVM does). Block: 4 KiB random reads of a 64 MiB pattern file at
# QD1 and QD16 (completions polled), and up to 32 in flight with completion interrupts asked for
# (irq=1) in an open loop of 400 000 reads/s (rate=), where coalescing has something to save.
# Network: ICMP echo round trips to the host's end of a TAP (net=1) and a stream of 1514-byte UDP
# frames to it (stream=1; the IOPS column is then frames/s). KVM's own per-vCPU "exits" statistic
# is read live at the guest's start and end marks (hvctl: `hvctl stats` on its control socket;
# QEMU: QMP query-stats); kicks are the guest's own doorbell writes.
# Usage: benchmarks/iobench.sh (as root, after `make`; python3 reads QMP); env REPEAT (runs per
# cell, the median by rate, or by latency for the open loop; default 3), BENCH_LOG (raw lines,
# default /tmp/iobench.log). Prints a Markdown table.
set -euo pipefail
. "$(dirname "$0")/iobench-setup.sh"
repeat=${REPEAT:-3}

# "EXITS INTERRUPTS": KVM's "exits" summed over every vCPU of the VM(s), and the completion
# interrupts the VMM raised (hvctl's queue counters; QEMU keeps none, so "-").
hvctl_sample() {
    "$hvctl" stats --socket "$work/api.sock" | grep -oE '"(exits|interrupts)":[0-9]+' |
        awk -F: '{ s[$1] += $2 } END { print s["\"exits\""] + 0, s["\"interrupts\""] + 0 }'
}
qemu_sample() {
    python3 "$here/vcpu-stats.py" "qmp:$work/qmp.sock" exits | awk -F'[=,]' '{ for (i = 2; i <= NF; i++) s += $i; print s + 0, "-" }'
}

# measure NAME WORKLOAD MARKS SAMPLER COMMAND...: runs COMMAND, reads its console, runs SAMPLER
# (which prints the exit count) at the MARKS-th start mark and the MARKS-th end mark (2 for a VM
# pair, whose guests hold each mark long enough for the other), and prints one "bench:" line.
measure() {
    local name=$1 workload=$2 marks=$3 sampler=$4; shift 4
    rm -f "$work/api.sock" "$work/qmp.sock"
    local starts=0 ends=0 sample0="0 0" sample1="0 0" line requests=0 kicks=0 errors=0 iops=0 lat=0
    while IFS= read -r line; do
        line=${line%$'\r'}
        case "$line" in
            # A sampler that fails leaves "- -": that run's counts are unknown, the rest goes on.
            *"iobench: start") starts=$((starts + 1)); [ $starts != "$marks" ] || sample0=$($sampler) || sample0="- -" ;;
            *"iobench: end") ends=$((ends + 1)); [ $ends != "$marks" ] || sample1=$($sampler) || sample1="- -" ;;
            *"iobench: result"*)
                for field in ${line#*result}; do
                    case $field in
                        requests=*) requests=$((requests + ${field#*=})) ;; kicks=*) kicks=$((kicks + ${field#*=})) ;;
                        errors=*) errors=$((errors + ${field#*=})) ;; iops=*) iops=$((iops + ${field#*=})) ;;
                        lat_avg_ns=*) lat=$((lat + ${field#*=} / marks)) ;;
                    esac
                done ;;
            *"iobench: error"*) echo "bench: $name $workload guest-error ${line#*error}" ;;
        esac
    done < <("$@" 2>&1)
    local irqs=- exits=- number='^[0-9]+$'
    [[ ${sample0% *} =~ $number && ${sample1% *} =~ $number ]] && exits=$((${sample1% *} - ${sample0% *}))
    [[ ${sample0#* } =~ $number && ${sample1#* } =~ $number ]] && irqs=$((${sample1#* } - ${sample0#* }))
    echo "bench: $name $workload iops=$iops lat_avg_ns=$lat requests=$requests kicks=$kicks errors=$errors exits=$exits interrupts=$irqs"
}

# qemu POLL_MAX_NS CMDLINE: QEMU with the disk on an iothread, or with net=1 in CMDLINE a
# virtio-net NIC on TAP iobq0 (QEMU 7.2 has no iothread for virtio-net).
qemu() {
    local poll=$1 cmdline=$2 device
    if [[ $cmdline == *net=1* ]]; then
        configure_tap iobq0 &
        device=(-netdev tap,id=n0,ifname=iobq0,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac=$guest_mac,romfile=)
    else
        device=(-object iothread,id=io0,poll-max-ns=$poll
                -drive file="$work/disk.img",if=none,id=d0,format=raw,aio=io_uring -device virtio-blk-pci,drive=d0,iothread=io0)
    fi
    qemu-system-x86_64 -enable-kvm -cpu host -m 256 -display none -no-reboot -nodefaults -serial stdio \
        -qmp unix:"$work/qmp.sock",server=on,wait=off -kernel "$guest" -append "$cmdline" "${device[@]}"
}

# hvctl_run MODE CMDLINE [OPTION...]: hvctl with the disk, or with net=1 in CMDLINE a NIC on TAP iobh0.
hvctl_run() {
    local mode=$1 cmdline=$2; shift 2
    local device=(--disk path="$work/disk.img")
    [[ $cmdline == *net=1* ]] && { configure_tap iobh0 & device=(--net tap=iobh0,mac=$guest_mac); }
    "$hvctl" run --kernel "$guest" --memory 256 "${device[@]}" --cmdline "$cmdline" --io-mode "$mode" --api-socket "$work/api.sock" "$@"
}

# The net workload pings the host's end of the TAP: 169.254.77.1 with a fixed MAC, and a permanent
# neighbour entry for the guest, set as soon as the VMM has created the TAP (the guest holds its
# start mark for a second, long enough for this).
host_mac=02:00:00:77:00:01 guest_mac=02:00:00:77:00:02
configure_tap() {
    local tap=$1 i
    for i in $(seq 1000); do [ -d /sys/class/net/$tap ] && break; sleep 0.01; done
    ip link set "$tap" address $host_mac && ip addr add 169.254.77.1/24 dev "$tap" && ip link set "$tap" up &&
        ip neigh replace 169.254.77.2 lladdr $guest_mac dev "$tap" nud permanent ||
        echo "iobench.sh: could not set up the host end of TAP $tap (the run's round trips will fail)" >&2
}

cat > "$work/pair.json" <<JSON
{"vms": [{"name": "a", "kernel": "$guest", "memory": 256, "disks": ["path=$work/disk.img,readonly=on"], "cmdline": "@CMDLINE@"},
         {"name": "b", "kernel": "$guest", "memory": 256, "disks": ["path=$work/disk.img,readonly=on"], "cmdline": "@CMDLINE@"}]}
JSON

for workload in "qd=1 requests=20000" "qd=16 requests=100000" "qd=32 rate=400000 requests=200000 irq=1" \
                "net=1 requests=20000 hold_ms=1000 peer_mac=0x${host_mac//:/}" \
                "net=1 stream=1 requests=300000 hold_ms=1000 peer_mac=0x${host_mac//:/}"; do
    key=$(echo "$workload" | sed 's/ requests=[0-9]*//; s/ hold_ms=[0-9]*//; s/ peer_mac=[0-9a-fx]*//; s/ /,/g')
    for run in $(seq "$repeat"); do
        for mode in notify poll hybrid; do
            measure "hvctl-$mode" "$key" 1 hvctl_sample hvctl_run $mode "$workload"
        done
        if [[ $workload == *irq=1* ]]; then
            for mode in poll hybrid; do
                measure "hvctl-$mode-nocoalesce" "$key" 1 hvctl_sample hvctl_run $mode "$workload" --irq-coalesce off
            done
        fi
        [[ $workload == *net=1* ]] && { measure qemu "$key" 1 qemu_sample qemu 0 "$workload"; continue; }
        sed "s/@CMDLINE@/$workload hold_ms=1500/" "$work/pair.json" > "$work/pair-now.json"
        measure hvctl-hybrid-2vms-1core "$key" 2 hvctl_sample "$hvctl" run --config "$work/pair-now.json" --side-cores 1 \
            --api-socket "$work/api.sock"
        measure qemu-iothread "$key" 1 qemu_sample qemu 32768 "$workload"
        measure qemu-iothread-poll1ms "$key" 1 qemu_sample qemu 1000000 "$workload"
    done
done | tee "${BENCH_LOG:-/tmp/iobench.log}" | awk -f "$here/iobench-summary.awk"
