#!/bin/sh
# Runs inside the nested rig's L2 (see boot-time.sh): boot-to-poweroff time of the default guest
# under hvctl and under QEMU/KVM, same kernel, initramfs, command line and RAM, alternating;
# then hvctl's resident memory beyond guest RAM while the guest sits at its shell.
runs=${RUNS:-3}
script=$(echo 'echo bench' | base64)
cmdline="console=ttyS0 panic=-1 quiet guest.run=$script"
now() { awk '{print int($1 * 100)}' /proc/uptime; }  # centiseconds
for i in $(seq "$runs"); do
    start=$(now)
    hvctl run --kernel /guest/bzImage --initrd /guest/initramfs.cpio --memory 512 --cmdline "$cmdline" >/dev/null 2>&1
    echo "bench: hvctl run=$i status=$? centiseconds=$(( $(now) - start ))"
    start=$(now)
    qemu-system-x86_64 -enable-kvm -cpu host -m 512 -nographic -no-reboot -nic none \
        -kernel /guest/bzImage -initrd /guest/initramfs.cpio -append "$cmdline" >/dev/null 2>&1 </dev/null
    echo "bench: qemu run=$i status=$? centiseconds=$(( $(now) - start ))"
done

# Resident memory: total RSS minus the RSS of the guest-RAM mapping (the 512 MiB anonymous one),
# and the same for anonymous memory alone (what is not clean, shareable program text).
hvctl run --kernel /guest/bzImage --initrd /guest/initramfs.cpio --memory 512 --cmdline 'console=ttyS0 quiet' >/dev/null 2>&1 &
pid=$!
sleep 20
awk '/^[0-9a-f]+-[0-9a-f]+ /{size = 0} /^Size:/{size = $2}
     /^Rss:/{total += $2; if (size == 524288) guest += $2}
     /^Anonymous:/{anon += $2; if (size == 524288) guestanon += $2}
     END {printf "bench: hvctl rss_kib=%d guest_ram_rss_kib=%d vmm_overhead_rss_kib=%d vmm_overhead_anonymous_kib=%d\n",
          total, guest, total - guest, anon - guestanon}' /proc/$pid/smaps
kill -TERM $pid; wait $pid
