/* iobench: polled virtio drivers that run at CPL3 (see entry.S), for measuring a VMM's I/O
 * request path without guest-kernel costs, even where KVM emulates guest ring 0 (PVM).
 *
 * Command line (all optional): net=1 runs the network workload (net.c) instead of the block one
 * (blk.c), hostile=1 a misbehaving block driver (hostile.c; with net=1 a misbehaving network driver,
 * net_hostile.c), redirect=1 interrupts taken by two
 * CPUs (redirect.c). irq=1 asks for completion interrupts
 * (MSI-X vector 0, NO_INTERRUPT clear): the VMM signals them as for any driver, and KVM drops them
 * at this CPU's local APIC, which is never software-enabled (the CPU runs with interrupts off and
 * keeps polling), so the VMM's interrupt work (and coalescing) is measured without a guest
 * handler's cost. hold_ms=N is how long the guest waits at each mark (default 300). verify=0 skips
 * checking what a block read returned (for a null backend; the status is still checked). Output on
 * COM1: "iobench: start" and "iobench: end" around the measured loop (the host samples KVM's
 * counters there), then (block workload) one "iobench: histogram" line with the requests' latency
 * buckets and one "iobench: result" line; then ACPI power-off. The loader must zero
 * .bss (page tables and statics live there), as ELF loaders do. */
#include "workloads.h"

void iobench_main(const struct start_info *info) {
    platform_init(info);
    int irq = arg("irq", 0) != 0;
    u64 hold_ns = arg("hold_ms", 300) * 1000000;
    if (arg("hostile", 0) && arg("net", 0)) net_hostile_workload();
    else if (arg("hostile", 0)) hostile_workload();
    else if (arg("redirect", 0)) redirect_workload(hold_ns);
    else if (arg("net", 0)) net_workload(irq, hold_ns);
    else blk_workload(irq, hold_ns);
    power_off();
}
