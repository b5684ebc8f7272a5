/* The interrupt-redirection workload (redirect=1; the VM needs 2 vCPUs): completions of one
 * block queue go to an MSI message that lets either CPU take them (lowest-priority delivery to
 * the logical destination of APIC IDs 0 and 1, as Linux before 4.15 programmed them in flat
 * mode), while the boot CPU runs the reads at CPL3 and the application processor first halts,
 * then spins.
 * Each CPU counts the interrupts it takes, so the log shows where the VMM's (or KVM's) choice
 * sent them: a VMM that redirects away from halted vCPUs sends the first phase's to CPU 0.
 * vector=N picks the vector (KVM hashes lowest-priority vectors over the destination set;
 * odd vectors land on CPU 1 there), requests=N the reads per phase. irqwait=1: the boot CPU
 * waits for each completion's interrupt (taken by either CPU) before it looks at the ring, so a
 * read's latency includes the interrupt's delivery, as with an interrupt-driven driver. */
#include "blk.h"
#include "lapic.h"
#include "latency_histogram.h"
#include "workloads.h"

struct phase { u64 cpu0, cpu1; struct blk_reads reads; };

static u64 interrupts_taken(void) { return irq_count(0) + irq_count(1); }

static void run_phase(u64 total, int wait_for_interrupts, struct phase *p) {
    u64 cpu0 = irq_count(0), cpu1 = irq_count(1);
    blk_run(1, total, 0, wait_for_interrupts ? interrupts_taken : 0, &p->reads);
    spin_ns(1000000);  /* the last completion's interrupt */
    p->cpu0 = irq_count(0) - cpu0;
    p->cpu1 = irq_count(1) - cpu1;
}

/* " <phase>_cpu0=N <phase>_cpu1=N <phase>_lat_avg_ns=N <phase>_late=N <phase>_ns=N" (_ns: the
 * phase's reads from first to last, for its rate) */
static void put_phase(const char *phase, struct phase *p) {
    u64 values[5] = { p->cpu0, p->cpu1, p->reads.completed ? p->reads.latency_sum / p->reads.completed : 0, p->reads.late_interrupts,
                      p->reads.ns };
    const char *names[5] = { "_cpu0=", "_cpu1=", "_lat_avg_ns=", "_late=", "_ns=" };
    for (int i = 0; i < 5; i++) { puts_serial(" "); puts_serial(phase); puts_serial(names[i]); put_u64(values[i]); }
}

void redirect_workload(u64 hold_ns) {
    u64 total = arg("requests", 2000);
    u8 vector = (u8)arg("vector", 0x41);
    int wait_for_interrupts = arg("irqwait", 0) != 0;
    if (vector < 0x20 || vector == SPURIOUS_VECTOR || vector == WAKE_VECTOR) fail("vector out of range (0x20-0xFE, not 0x50)");
    idt_set_gate(vector, irq_count_handler, 0);
    idt_set_gate(SPURIOUS_VECTOR, spurious_handler, 0);
    idt_set_gate(WAKE_VECTOR, eoi_handler, 0);
    idt_set_gate(13, gp_handler, 0);
    lapic_enable_flat_logical();
    start_application_processor(1);
    /* Address: logical destination mode (bit 2), destination 0x03. Data: lowest priority. */
    blk_open(1, 0xFEE00000u | 0x03u << 12 | 1u << 2, vector | 1u << 8, 1);
    interrupts_on();

    puts_serial("iobench: start\n");
    spin_ns(hold_ns);
    struct phase halted, spinning;
    histogram_reset();  /* one histogram over both phases */
    run_phase(total, wait_for_interrupts, &halted);
    ap_spin = 1;
    send_fixed_ipi(1, WAKE_VECTOR);  /* halted, it would not see ap_spin */
    spin_ns(hold_ns);
    run_phase(total, wait_for_interrupts, &spinning);
    interrupts_off();
    puts_serial("iobench: end\n");
    spin_ns(hold_ns);
    histogram_print();  /* both phases' reads */
    /* Both phases together in blk's fields (the host reads them as any run's), then each phase. */
    u64 requests = halted.reads.completed + spinning.reads.completed, ns = halted.reads.ns + spinning.reads.ns;
    u64 latency_max = halted.reads.latency_max > spinning.reads.latency_max ? halted.reads.latency_max : spinning.reads.latency_max;
    puts_serial("iobench: result test=redirect");
    put_field("vector", vector); put_field("requests", requests);
    put_field("errors", halted.reads.errors + spinning.reads.errors); put_field("kicks", halted.reads.kicks + spinning.reads.kicks);
    put_field("ns", ns); put_field("iops", ns ? requests * 1000000000ull / ns : 0);
    put_field("lat_avg_ns", requests ? (halted.reads.latency_sum + spinning.reads.latency_sum) / requests : 0);
    put_field("lat_max_ns", latency_max);
    put_phase("halted", &halted); put_phase("spinning", &spinning);
    puts_serial("\n");
}
