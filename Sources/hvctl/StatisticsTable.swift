/// The table `--stats` prints to stderr at exit.
enum StatisticsTable {
    /// The counters shown by `--stats`, in this order; every other KVM statistic is in the JSON.
    static let summaryNames = [
        "exits", "io_exits", "mmio_exits", "halt_exits", "irq_exits", "irq_window_exits",
        "irq_injections", "nmi_injections", "insn_emulation", "signal_exits", "blocking",
    ]

    static func print(_ vcpus: [[String: UInt64]]) {
        printError("KVM statistics per vCPU:")
        let names = summaryNames.filter { name in vcpus.contains { $0[name] != nil } }
        printError("  " + "vcpu".padding(6) + names.map { $0.padding(16) }.joined())
        for (id, values) in vcpus.enumerated() {
            printError("  " + "\(id)".padding(6) + names.map { "\(values[$0] ?? 0)".padding(16) }.joined())
        }
    }
}
