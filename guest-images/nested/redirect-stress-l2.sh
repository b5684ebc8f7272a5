#!/bin/sh
# Runs inside the nested rig's L2 (see redirect-stress): the iobench guest's interrupt-redirection
# workload (redirect=1, two vCPUs, the disk's MSI to either CPU; NestedBlockTests runs it once per
# setting) RUNS times under hvctl with --irq-redirect off, under hvctl with it on, and under QEMU,
# in turns. One line per run:
#   run N HYPERVISOR ok|failed status=S [the guest's last line]
# then, per failure, the guest's console and hvctl's messages, and L2's KVM's view of the L3
# shutdown (the event being delivered when the vCPU shut down; l2-init traces every one). Ends with
#   summary HYPERVISOR runs=N ok=N failures=N
set -u
runs=${RUNS:-20}
args='redirect=1 requests=500 vector=0x41 hold_ms=50'
tracing=/sys/kernel/debug/tracing
hypervisors="hvctl-off hvctl-on qemu"
for hv in $hypervisors; do eval "ok_$(echo $hv | tr - _)=0"; done
n=1
while [ "$n" -le "$runs" ]; do
    for hv in $hypervisors; do
        [ -d $tracing ] && echo > $tracing/trace
        case $hv in
        hvctl-*)
            timeout 120 hvctl run --kernel /guest/iobench.elf --memory 256 --cpus 2 --disk path=/guest/pattern.img \
                --io-mode notify --irq-redirect "${hv#hvctl-}" --cmdline "$args" </dev/null >/tmp/run.log 2>&1 ;;
        qemu)
            # -no-reboot: a triple fault ends QEMU (status 0) without the guest's result line.
            timeout 120 qemu-system-x86_64 -enable-kvm -cpu host -smp 2 -m 256 -display none -no-reboot \
                -nodefaults -serial stdio -kernel /guest/iobench.elf -append "$args" \
                -drive file=/guest/pattern.img,if=none,id=d0,format=raw -device virtio-blk-pci,drive=d0 \
                </dev/null >/tmp/run.log 2>&1 ;;
        esac
        status=$?
        last=$(tr -d '\r' < /tmp/run.log | grep -v '^hvctl: ' | tail -1 | cut -c1-100)
        if [ "$status" = 0 ] && grep -q 'iobench: result' /tmp/run.log; then
            v=ok_$(echo $hv | tr - _); eval "$v=\$(($v + 1))"
            echo "run $n $hv ok status=0"
        else
            echo "run $n $hv failed status=$status $last"
            tr -d '\r' < /tmp/run.log | tail -30 | sed 's/^/    /'
            grep -a 'reason shutdown' $tracing/trace 2>/dev/null | sed 's/^.*kvm_exit: /    L2 saw an L3 shutdown: /'
        fi
    done
    n=$((n + 1))
done
for hv in $hypervisors; do
    eval "ok=\$ok_$(echo $hv | tr - _)"
    echo "summary $hv runs=$runs ok=$ok failures=$((runs - ok))"
done
