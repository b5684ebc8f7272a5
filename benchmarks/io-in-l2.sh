#!/bin/sh
# Runs inside the nested rig's L2 (see io.sh): the same guest under hvctl (in each I/O mode of
# MODES) and under QEMU/KVM, each running fio 4 KiB random reads at QD1 and QD16 on a virtio-blk
# disk and an iperf3 TCP stream on virtio-net. KVM's counters (debugfs, summed over the live VM,
# one VM at a time) are sampled around each workload.
runtime=${RUNTIME:-10}
kvm=/sys/kernel/debug/kvm
dd if=/dev/urandom of=/tmp/bench.img bs=1M count=256 2>/dev/null
counters() { for c in exits io_exits mmio_exits halt_exits irq_injections irq_exits irq_window_exits insn_emulation halt_wakeup; do printf '%s=%s ' $c "$(cat $kvm/$c)"; done; }

guest_script() {
    cat <<GUEST
ip link set lo up; ip addr add 169.254.88.2/24 dev eth0; ip link set eth0 up; sleep 1
for qd in 1 16; do
  echo bench-mark start-qd\$qd; sleep 2
  fio --name=randread --filename=/dev/vda --rw=randread --bs=4k --direct=1 --ioengine=libaio --iodepth=\$qd \
      --runtime=$runtime --time_based --group_reporting > /tmp/fio 2>&1
  echo bench-mark end-qd\$qd; sleep 2
  echo "bench-fio qd=\$qd \$(grep -o 'IOPS=[^,]*' /tmp/fio) \$(grep -E '^ +lat \\(' /tmp/fio | head -1 | tr -s ' ') \$(grep -o 'ios=[0-9]*' /tmp/fio | head -1)"
done
echo bench-mark start-tcp; sleep 2
timeout $((runtime + 30)) iperf3 -c 169.254.88.1 -t $runtime -f m > /tmp/iperf 2>&1
echo bench-mark end-tcp; sleep 2
echo "bench-tcp \$(grep -E 'sender' /tmp/iperf | tr -s ' ')"
GUEST
}

# run NAME TAP COMMAND...: boots, follows the console for marks, samples counters at each mark.
# The console comes through a FIFO read by the shell's own read: no process per line or per poll,
# so L2 stays quiet while the guest is measured.
cr=$(printf '\r')
run() {
    name=$1 tap=$2; shift 2
    rm -f /tmp/fifo-$name; mkfifo /tmp/fifo-$name
    "$@" > /tmp/fifo-$name 2>&1 &
    pid=$!
    # The TAP appears once the VMM has opened it.
    ( i=0; while [ ! -d /sys/class/net/$tap ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
      ip addr add 169.254.88.1/24 dev $tap; ip link set $tap up ) &
    : > /tmp/console-$name
    while IFS= read -r line; do
        line=${line%"$cr"}
        echo "$line" >> /tmp/console-$name
        case "$line" in
            "bench-mark "*) echo "bench: $name ${line#bench-mark } $(counters)" ;;
            # Results as they come, so a rig that dies later keeps them.
            bench-fio*|bench-tcp*) echo "bench: $name $line" ;;
        esac
    done < /tmp/fifo-$name
    wait $pid; echo "bench: $name exit-status $?"
    # A run without results shows why: the end of its console.
    grep -q '^bench-tcp' /tmp/console-$name || tail -40 /tmp/console-$name | sed "s/^/bench: $name console: /"
    ip link del $tap 2>/dev/null || true  # QEMU's TAP went with it
}

iperf3 -s -D
cmdline="console=ttyS0 panic=-1 quiet guest.run=$(guest_script | base64 | tr -d '\n')"
# hvctl in each I/O mode (MODES, default: all four), then QEMU with its iothread's adaptive
# polling (poll-max-ns=32768 is QEMU's default, written out so the comparison is explicit).
n=0
for mode in ${MODES:-notify poll poll-nocoalesce hybrid}; do
    case $mode in
        poll-nocoalesce) options="--io-mode poll --irq-coalesce off" ;;
        hybrid-unpinned) options="--io-mode hybrid --side-core-cpus none" ;;
        # The hybrid window scaled to the rig: TCG makes request gaps ~50x longer than on hardware.
        hybrid-window10ms) options="--io-mode hybrid --poll-max-us 10000" ;;
        # Interrupt redirection on (away from halted and descheduled vCPUs) or off; auto is the default.
        hybrid-redirect-on) options="--io-mode hybrid --irq-redirect on" ;;
        hybrid-redirect-off) options="--io-mode hybrid --irq-redirect off" ;;
        *) options="--io-mode $mode" ;;
    esac
    run hvctl-$mode tap$n hvctl run --kernel /guest/bzImage --initrd /bench-initramfs.cpio --memory 1024 --cpus ${CPUS:-1} \
        --disk path=/tmp/bench.img --net tap=tap$n --cmdline "$cmdline" $options --stats-json /tmp/stats-$mode.json
    echo "bench: hvctl-$mode stats $(cat /tmp/stats-$mode.json 2>/dev/null | tr -d '\n')"
    n=$((n + 1))
done
run qemu tap$n qemu-system-x86_64 -enable-kvm -cpu host -smp ${CPUS:-1} -m 1024 -nographic -no-reboot -nodefaults -serial stdio \
    -kernel /guest/bzImage -initrd /bench-initramfs.cpio -append "$cmdline" \
    -object iothread,id=io0,poll-max-ns=32768 -drive file=/tmp/bench.img,if=none,id=d0,format=raw,aio=io_uring \
    -device virtio-blk-pci,drive=d0,iothread=io0 \
    -netdev tap,id=n0,ifname=tap$n,script=no,downscript=no -device virtio-net-pci,netdev=n0,romfile=
