#!/bin/sh
# Runs inside the nested rig's L2 (see boot-stress): boots the default guest BOOTS times under each
# hypervisor in HYPERVISORS (alternating, "hvctl qemu" by default), each with 2 vCPUs, 256 MiB and
# a 2-queue virtio-blk disk holding random data, and has the guest read both halves of the disk
# with O_DIRECT at once, one half per CPU (taskset), then power off. One line per boot:
#   boot N HYPERVISOR OUTCOME seconds=S
# OUTCOME: ok (both halves read back right, guest powered off), bad-data, triple-fault (hvctl),
# reset (QEMU ended without the guest's exit line: a triple fault or a reboot), panic, hang (no
# poweroff within BOOT_TIMEOUT seconds; stopped with SIGTERM, then SIGKILL), hang-l2-state (a
# hang whose vCPU holds L2's registers, see l2_state), failed (any other exit status).
# A boot that is not ok is followed by `--- diagnosis` lines: the end of the console, hvctl's own
# messages (each vCPU's registers, last exits and KVM statistics), KVM's counters for a hung VM
# (debugfs, read before it is stopped) and the end of L2's kernel log. Ends with
#   summary HYPERVISOR boots=N ok=N failures=N [OUTCOME=N ...]
# TF_REPEATS=N boots a guest again when it triple-faulted (hvctl) or reset (QEMU) while L2's KVM
# was delivering an event to it (failed_delivery), or hung with L2's registers in it, at most N
# times over the run, each announced with
# `boot N HYPERVISOR repeated: ...` and its diagnosis: failures whose signature QEMU's guests share
# in this rig (docs/smp-reliability.md). Default 0: every boot counts, as boot-stress wants.
set -u
boots=${BOOTS:-8}
hypervisors=${HYPERVISORS:-hvctl qemu}
# REVERSE=1 boots them in the opposite order: the first L3 guest after L2's boot is the likeliest
# to triple-fault, so boot-stress takes turns at being first from one rig run to the next.
if [ "${REVERSE:-0}" = 1 ]; then r=; for hv in $hypervisors; do r="$hv $r"; done; hypervisors=$r; fi
boot_timeout=${BOOT_TIMEOUT:-240}
# Guest RAM under both hypervisors; l2_state also judges CR3 by it.
memory_mib=256
repeats_left=${TF_REPEATS:-0}
# HVCTL_ARGS: more hvctl run options (e.g. --io-mode notify), to tell one part of hvctl from another.
kernel=/guest/bzImage
initrd=/guest/initramfs.cpio
image=/tmp/stress.img

dd if=/dev/urandom of=$image bs=1M count=64 2>/dev/null
half0=$(dd if=$image bs=1M count=32 2>/dev/null | md5sum | cut -d' ' -f1)
half1=$(dd if=$image bs=1M skip=32 count=32 2>/dev/null | md5sum | cut -d' ' -f1)

# The guest's script: both halves at once, each from its own CPU, so both queues carry requests.
guest_script='for c in 0 1; do (h=$(taskset -c $c dd if=/dev/vda bs=16k skip=$((c * 2048)) count=2048 iflag=direct 2>/dev/null | md5sum | cut -d" " -f1); echo "half$c $h") & done; wait'
cmdline="console=ttyS0 panic=-1 guest.run=$(echo "$guest_script" | base64 -w0)"

# KVM's counters of the VM whose owner is $1, as name=value pairs (debugfs, one directory per VM).
counters() {
    dir=$(ls -d /sys/kernel/debug/kvm/"$1"-* 2>/dev/null | head -1)
    [ -n "$dir" ] || return 0
    for c in exits halt_exits halt_wakeup io_exits mmio_exits irq_exits irq_window_exits irq_injections \
             nmi_injections request_irq_exits insn_emulation insn_emulation_fail pf_taken pf_fixed \
             pf_emulate pf_spurious tlb_flush invlpg remote_tlb_flush signal_exits; do
        [ -f "$dir/$c" ] && printf '%s=%s ' "$c" "$(cat "$dir/$c")"
    done
    echo
}

# KVM_TRACE=1: L2's KVM trace events (exits, injected exceptions and interrupts, emulated
# instructions, nested page faults) of each boot, whose end is printed with a failure: the events
# that led a vCPU into a triple fault or a loop, which hvctl's own view (exits to userspace) lacks.
tracing=/sys/kernel/debug/tracing
trace_events="kvm_exit kvm_inj_exception kvm_inj_virq kvm_emulate_insn kvm_page_fault kvm_userspace_exit"
trace_start() {
    [ -d $tracing/events/kvm ] || return 0
    echo > $tracing/trace  # this boot's events only (l2-init has every L3 shutdown traced)
    [ "${KVM_TRACE:-0}" = 1 ] || return 0
    rm -f /tmp/traced; echo 0 > $tracing/tracing_on; echo 4096 > $tracing/buffer_size_kb
    echo 0 > $tracing/events/kvm/kvm_exit/filter  # l2-init keeps shutdown exits only; this wants all
    for e in $trace_events; do echo 1 > $tracing/events/kvm/$e/enable; done
    echo 1 > $tracing/tracing_on
}
# The shutdown exit L2's KVM saw for a triple fault (hvctl) or reset (QEMU), as one line to compare
# the two by: the guest RIP's offset within 2 MiB (KASLR moves the kernel in 2 MiB steps) and the
# event being delivered (exit_int_info: vector, type, error code).
shutdown_signature() {
    [ -d $tracing/events/kvm ] || return 0
    grep 'reason shutdown' $tracing/trace | tail -1 | awk '{
        for (i = 1; i <= NF; i++) { if ($i == "rip") rip = $(i + 1); if ($i == "intr_info") info = $(i + 1); if ($i == "error_code") err = $(i + 1) }
        if (rip == "") exit
        low = substr(rip, length(rip) - 5)  # the low 21 bits: the top hex digit of six, mod 2
        high = (index("0123456789abcdef", substr(low, 1, 1)) - 1) % 2
        printf "signature shutdown at 2MiB-offset 0x%d%s delivering intr_info %s error_code %s\n", high, substr(low, 2), info, err }'
}

# Whether this boot's shutdown came while an event other than a double fault was being delivered:
# the failed-delivery class both hypervisors' guests show in this rig (docs/smp-reliability.md). A
# guest's own triple fault ends delivering a double fault, or shows no event at all.
failed_delivery() {
    info=$(grep 'reason shutdown' $tracing/trace 2>/dev/null | tail -1 | sed -n 's/.* intr_info 0x\([0-9a-f]*\) .*/\1/p')
    [ -n "$info" ] || return 1
    [ $((0x$info >> 31 & 1)) = 1 ] && [ $((0x$info & 0x7ff)) != $((0x308)) ]
}

trace_dump() {  # trace_dump TITLE: the last events of the boot
    [ "${KVM_TRACE:-0}" = 1 ] && [ -d $tracing/events/kvm ] && [ ! -f /tmp/traced ] || return 0
    echo 0 > $tracing/tracing_on; touch /tmp/traced
    echo "--- diagnosis: $1: L2's KVM trace, the last 300 events"
    grep -v '^#' $tracing/trace | tail -300 | sed 's/^/    /'
}

thread_line() {  # thread_line /proc/PID/task/TID: its name, state and the L2 CPU it last ran on
    echo "$(cat $1/comm 2>/dev/null) state=$(awk '{print $3}' $1/stat 2>/dev/null) cpu=$(awk '{print $39}' $1/stat 2>/dev/null)"
}

threads() {  # threads PID TITLE: each thread's line, kernel wait channel and kernel stack
    echo "--- diagnosis: $2"
    for t in /proc/$1/task/*; do
        echo "    $(thread_line $t) wchan=$(cat $t/wchan 2>/dev/null)"
        sed 's/^/        /' $t/stack 2>/dev/null | head -12
    done
}

# A process SIGKILL has not ended for 5 s is stuck in L2's kernel (L2's KVM), and nothing in L2
# can end it: the rig would wait for it until its own timeout. This prints how its threads used
# L2's CPUs over 2 s (schedstat: ns run, ns waited runnable; a thread that waits and never runs
# was starved by L2's scheduler) and L2's per-CPU interrupt counts (a CPU whose timer count stands
# still has stopped), then tells nested/run on L2's second serial port, which reads L2's CPU
# registers from outside and ends the rig run as an L2 stall.
outlived_sigkill() {  # outlived_sigkill PID HYPERVISOR BOOT
    echo "--- diagnosis: boot $3 $2: the process outlived SIGKILL; its threads' CPU time over 2 s, and L2's interrupts"
    for round in 1 2; do
        for t in /proc/$1/task/*; do
            echo "    reading $round: $(thread_line $t) schedstat=$(tr ' ' , < $t/schedstat 2>/dev/null)"
        done
        grep -E '^ *(LOC|RES|CAL|TLB):' /proc/interrupts | sed "s/^/    reading $round: /"
        [ $round = 2 ] || sleep 2
    done
    [ -c /dev/ttyS1 ] && echo "nested-rig: L2 broken: $2's process (boot $3) outlived SIGKILL in L2's kernel" > /dev/ttyS1
}

# expect TEXT: tells nested/run (on L2's ttyS1) that the console will print TEXT next, so a
# console that stopped transmitting ends the rig run at once instead of at its timeout.
expect() { [ -c /dev/ttyS1 ] && echo "nested-rig: expect $1" > /dev/ttyS1; return 0; }

# bounded SECONDS COMMANDS: runs a diagnosis in the background and prints what it wrote once it
# is done or SECONDS have passed, whichever comes first, so a read that blocks on a stuck VM (its
# debugfs counters, a thread's kernel stack) cannot keep the hung guest from being stopped.
# Each call has files of its own: one left running after its time may finish during a later call.
bounded_calls=0
bounded() {
    bounded_calls=$((bounded_calls + 1))
    out=/tmp/bounded.$$.$bounded_calls
    ( eval "$2" > $out.out 2>&1; touch $out.done ) &
    waited=0
    while [ ! -f $out.done ] && [ $waited -lt "$1" ]; do sleep 1; waited=$((waited + 1)); done
    cat $out.out 2>/dev/null
    [ -f $out.done ] || echo "--- diagnosis: still not done after $1 s: $2"
}

# l2_state FILE: for a hung boot, names L2 state found in an L3 vCPU, as hvctl's report at SIGTERM
# or QEMU's monitor (qemu_registers) shows it, from lines holding "CR2 0x... CR3 0x...": a CR3
# outside the guest's RAM (Linux's page tables live in it) or a CR2 inside one of L2's kernel
# modules (kvm, kvm_amd; the guest loads none). Both were seen in
# hung boots, and L2's own CR3 and CR2 held the same values while QEMU's guest hung the same way
# (docs/smp-reliability.md): TCG's emulated SVM carrying L2 registers into the L3 guest. Prints
# nothing when neither is there.
l2_state() {
    tr -d '\r' < "$1" | grep -E 'CR2 0x[0-9a-f]+ CR3 0x' | while read -r line; do
        cr2=$(echo "$line" | sed -n 's/.* CR2 0x\([0-9a-f]*\).*/\1/p')
        cr3=$(echo "$line" | sed -n 's/.* CR3 0x\([0-9a-f]*\).*/\1/p')
        # Bits 12-51 are the page-table address; the low 12 may hold a PCID.
        if [ -n "$cr3" ] && [ $(( 0x$cr3 & 0xffffffffff000 )) -ge $(( memory_mib << 20 )) ]; then
            echo "CR3 0x$cr3 outside the guest's $memory_mib MiB"
        fi
        # /proc/modules: name size refs deps state address. Upper and lower 32 bits apart: shell
        # arithmetic is signed 64-bit.
        [ ${#cr2} = 16 ] || continue
        while read -r name size _ _ _ address _; do
            a=${address#0x}
            [ ${#a} = 16 ] && [ "${a%????????}" = "${cr2%????????}" ] || continue
            low=$(( 0x${a#????????} )); fault=$(( 0x${cr2#????????} ))
            if [ $fault -ge $low ] && [ $fault -lt $(( low + size )) ]; then
                echo "CR2 0x$cr2 inside L2's module $name"
            fi
        done < /proc/modules
    done
}

# qemu_registers: each vCPU's CR2 and CR3 from QEMU's monitor (on the FIFOs /tmp/qmon.in and
# .out), as "qemu: vcpuN CR2 0x... CR3 0x..." lines; the whole reading goes to /tmp/qmon.txt.
qemu_registers() {
    cat /tmp/qmon.out > /tmp/qmon.txt &
    reader=$!
    echo "info registers -a" > /tmp/qmon.in
    sleep 3
    kill $reader 2>/dev/null
    tr -d '\r' < /tmp/qmon.txt | awk '/^CPU#/ { cpu = substr($1, 5) }
        /^CR0=/ { split($2, a, "="); split($3, b, "="); print "qemu: vcpu" cpu " CR2 0x" a[2] " CR3 0x" b[2] }'
}

start() {  # start HYPERVISOR LOG: the guest in the background; sets pid
    case $1 in
    hvctl)
        hvctl run --kernel $kernel --initrd $initrd --cpus 2 --memory $memory_mib --cmdline "$cmdline" \
            --disk path=$image,queues=2 --stats ${HVCTL_ARGS:-} </dev/null >"$2" 2>&1 &
        ;;
    qemu)
        # The monitor on FIFOs, so a hang's registers can be read (qemu_registers).
        rm -f /tmp/qmon.in /tmp/qmon.out; mkfifo /tmp/qmon.in /tmp/qmon.out
        qemu-system-x86_64 -enable-kvm -cpu host -smp 2 -m $memory_mib -nographic -no-reboot -nic none \
            -monitor pipe:/tmp/qmon \
            -kernel $kernel -initrd $initrd -append "$cmdline" \
            -drive file=$image,if=none,id=d0,format=raw,aio=io_uring \
            -device virtio-blk-pci,drive=d0,num-queues=2 </dev/null >"$2" 2>&1 &
        ;;
    esac
    pid=$!
}

outcome() {  # outcome HYPERVISOR LOG STATUS HUNG
    if [ "$4" = 1 ]; then echo hang; return; fi
    log=$(tr -d '\r' < "$2")
    if echo "$log" | grep -q "half0 $half0" && echo "$log" | grep -q "half1 $half1" &&
        echo "$log" | grep -q "sidecore-guest: exit 0" && [ "$3" = 0 ]; then echo ok; return; fi
    if echo "$log" | grep -q "sidecore-guest: exit"; then echo bad-data; return; fi
    if echo "$log" | grep -q "Kernel panic"; then echo panic; return; fi
    if echo "$log" | grep -q "triple-faulted"; then echo triple-fault; return; fi
    if [ "$1" = qemu ] && [ "$3" = 0 ]; then echo reset; return; fi
    echo "failed"
}

for hv in $hypervisors; do eval "ok_$hv=0 bad_$hv=''"; done
n=1
while [ $n -le "$boots" ]; do
    for hv in $hypervisors; do
        # Once, or again after a repeated triple fault (TF_REPEATS).
        while :; do
            log=/tmp/boot-$hv.log
            expect "boot $n $hv start"
            echo "boot $n $hv start"
            began=$(cut -d. -f1 /proc/uptime)
            trace_start
            start $hv $log
            # One sleeping watcher per boot rather than a poll loop: work in L2 while the guest boots
            # has been seen to make L3 triple faults more likely in this rig.
            rm -f /tmp/hung /tmp/sampled /tmp/qemu-registers
            # Its thread states are printed at once (a process stuck in the kernel may never be reaped).
            ( sleep "$boot_timeout"
              if kill -0 $pid 2>/dev/null; then
                  touch /tmp/hung
                  # L2's own registers while the guest hangs, asked for first (nested/run prints them
                  # at the end): an L3 CR3 outside guest RAM (as hvctl's report at SIGTERM shows it)
                  # that equals an L2 CR3 was carried over from L2 by the emulated SVM.
                  # nested/run looks every 5 s and reads twice, a second or more apart: 12 s covers both.
                  [ -c /dev/ttyS1 ] && echo "nested-rig: registers boot $n $hv hung" > /dev/ttyS1 && sleep 12
                  bounded 20 "counters $pid > /tmp/sampled; threads $pid 'boot $n $hv: threads at the timeout, before SIGTERM'"
                  [ "$hv" = qemu ] && bounded 20 "qemu_registers > /tmp/qemu-registers"
                  bounded 20 "trace_dump '$hv boot $n at the timeout'"
                  kill -TERM $pid
                  sleep 10
                  if kill -0 $pid 2>/dev/null; then
                      bounded 20 "threads $pid 'boot $n $hv: threads 10 s after SIGTERM, before SIGKILL'"
                      kill -KILL $pid 2>/dev/null; sleep 5
                      if kill -0 $pid 2>/dev/null; then
                          bounded 20 "threads $pid 'boot $n $hv: threads 5 s after SIGKILL'"
                          outlived_sigkill $pid $hv $n
                      fi
                  fi
              fi ) &
            watcher=$!
            # COUNTERS=1: KVM's counters of the VM every 2 s, the last reading printed with the boot's
            # line, to compare what each hypervisor's guest makes L2's KVM do for the same work.
            # Off by default: it is work in L2 while the guest boots (see above).
            rm -f /tmp/counters
            if [ "${COUNTERS:-0}" = 1 ]; then
                ( while kill -0 $pid 2>/dev/null; do
                      counters $pid > /tmp/counters.new
                      # A reading while the VM is torn down has names without values: kept only whole.
                      grep -q "^exits=[0-9]" /tmp/counters.new && mv /tmp/counters.new /tmp/counters
                      sleep 2
                  done ) &
            fi
            wait $pid; status=$?
            kill $watcher 2>/dev/null
            hung=0; [ -f /tmp/hung ] && hung=1
            sampled=$(cat /tmp/sampled 2>/dev/null)
            result=$(outcome $hv $log $status $hung)
            # A hang is the rig's only with L2's registers in the guest's vCPU (see l2_state).
            found=
            if [ "$result" = hang ]; then
                registers=$log; [ "$hv" = qemu ] && registers=/tmp/qemu-registers
                found=$(l2_state $registers | sort -u | paste -sd ';' -)
                [ -n "$found" ] && result=hang-l2-state
            fi
            if { [ "$result" = hang-l2-state ] || { { [ "$result" = triple-fault ] || [ "$result" = reset ]; } &&
                failed_delivery; }; } && [ "$repeats_left" -gt 0 ]; then
                repeats_left=$((repeats_left - 1))
                echo "boot $n $hv repeated: $result${found:+ ($found)}, a failure QEMU's guests show in this rig too ($repeats_left repeats left)"
                shutdown_signature
                tr -d '\r' < $log | tail -40 | sed 's/^/    /'
                trace_dump "$hv boot $n (repeated)"
                continue
            fi
            expect "boot $n $hv $result seconds="
            echo "boot $n $hv $result seconds=$(( $(cut -d. -f1 /proc/uptime) - began )) status=$status${found:+ ($found)}"
            case $result in triple-fault|reset) shutdown_signature ;; esac
            [ -s /tmp/counters ] && echo "counters boot $n $hv: $(cat /tmp/counters)"
            if [ "$result" = ok ]; then
                eval "ok_$hv=\$((ok_$hv + 1))"
            else
                eval "bad_$hv=\"\$bad_$hv $result\""
                echo "--- diagnosis: $hv boot $n, guest console and KVM statistics (last 50 lines):"
                tr -d '\r' < $log | grep -v '^hvctl: ' | tail -50 | sed 's/^/    /'
                echo "--- diagnosis: $hv's own messages (hvctl: each vCPU's registers and last exits):"
                tr -d '\r' < $log | grep '^hvctl: ' | sed 's/^/    /'
                echo "--- diagnosis: KVM counters of the VM when it was stopped: ${sampled:-none (it was not hung)}"
                if [ -s /tmp/qemu-registers ]; then
                    echo "--- diagnosis: QEMU's vCPUs at the timeout (its monitor):"
                    sed 's/^/    /' /tmp/qemu-registers
                fi
                echo "--- diagnosis: L2 kernel log (last 15 lines):"
                dmesg | tail -15 | sed 's/^/    /'
                trace_dump "$hv boot $n"
            fi
            break
        done
    done
    n=$((n + 1))
done
for hv in $hypervisors; do
    eval "ok=\$ok_$hv bad=\$bad_$hv"
    failures=$((boots - ok))
    detail=$(for o in $bad; do echo $o; done | sort | uniq -c | awk '{printf " %s=%s", $2, $1}')
    echo "summary $hv boots=$boots ok=$ok failures=$failures$detail"
done
# L2's own kernel complaints over the whole run (an RCU stall or a warning names L2's trouble).
echo "l2-kernel-warnings $(dmesg | grep -ciE 'rcu.*stall|WARNING:|BUG:|Oops|soft lockup')"
