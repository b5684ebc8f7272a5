#!/bin/sh
# Runs inside the nested rig's L2 (see io.sh): the same guest under hvctl and under QEMU/KVM, each
# running fio 4 KiB random reads at QD1 and QD16 on a virtio-blk disk and an iperf3 TCP stream on
# virtio-net. KVM's exit counters (debugfs, summed over the live VM) are sampled around each run.
runtime=${RUNTIME:-10}
kvm=/sys/kernel/debug/kvm
dd if=/dev/urandom of=/tmp/bench.img bs=1M count=256 2>/dev/null
counters() { for c in exits io_exits mmio_exits halt_exits irq_injections; do printf '%s=%s ' $c "$(cat $kvm/$c)"; done; }

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
iperf3 -c 169.254.88.1 -t $runtime -f m > /tmp/iperf 2>&1
echo bench-mark end-tcp; sleep 2
echo "bench-tcp \$(grep -E 'sender' /tmp/iperf | tr -s ' ')"
GUEST
}

# run NAME TAP COMMAND...: boots, follows the console for marks, samples counters at each mark.
run() {
    name=$1 tap=$2; shift 2
    "$@" > /tmp/console-$name 2>&1 &
    pid=$!
    i=0; while [ ! -d /sys/class/net/$tap ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i+1)); done
    ip addr add 169.254.88.1/24 dev $tap; ip link set $tap up
    seen=0
    while kill -0 $pid 2>/dev/null; do
        marks=$(grep -c 'bench-mark' /tmp/console-$name)
        while [ $seen -lt $marks ]; do
            seen=$((seen + 1))
            mark=$(grep 'bench-mark' /tmp/console-$name | sed -n "${seen}p" | tr -d '\r' | awk '{print $2}')
            echo "bench: $name $mark $(counters)"
        done
        sleep 0.2
    done
    wait $pid; echo "bench: $name exit-status $?"
    tr -d '\r' < /tmp/console-$name | grep -E '^bench-(fio|tcp)' | sed "s/^/bench: $name /"
    # A run without results shows why: the end of its console.
    grep -q '^bench-tcp' /tmp/console-$name || tail -40 /tmp/console-$name | sed "s/^/bench: $name console: /"
    ip link del $tap 2>/dev/null
}

iperf3 -s -D
cmdline="console=ttyS0 panic=-1 quiet guest.run=$(guest_script | base64 | tr -d '\n')"
run hvctl tap0 hvctl run --kernel /guest/bzImage --initrd /bench-initramfs.cpio --memory 1024 --cpus ${CPUS:-1} \
    --disk path=/tmp/bench.img --net tap=tap0 --cmdline "$cmdline"
run qemu tap1 qemu-system-x86_64 -enable-kvm -cpu host -smp ${CPUS:-1} -m 1024 -nographic -no-reboot -nodefaults -serial stdio \
    -kernel /guest/bzImage -initrd /bench-initramfs.cpio -append "$cmdline" \
    -object iothread,id=io0 -drive file=/tmp/bench.img,if=none,id=d0,format=raw,aio=io_uring \
    -device virtio-blk-pci,drive=d0,iothread=io0 \
    -netdev tap,id=n0,ifname=tap1,script=no,downscript=no -device virtio-net-pci,netdev=n0,romfile=
