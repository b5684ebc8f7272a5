import VMM

/// The table `--stats` prints to stderr at exit.
enum StatisticsTable {
    /// The counters shown by `--stats`, in this order; every other KVM statistic is in the JSON.
    static let summaryNames = [
        "exits", "io_exits", "mmio_exits", "halt_exits", "irq_exits", "irq_window_exits",
        "irq_injections", "nmi_injections", "insn_emulation", "signal_exits", "blocking",
    ]

    /// The vCPU table, then one line per device queue: its requests, kicks, interrupts (and
    /// those held back or redirected), errors and latency percentiles.
    static func print(_ vm: VMReport) {
        print(vm.vcpus.map(\.kvm))
        guard !vm.devices.isEmpty else { return }
        printError("Device queues:")
        let columns = [
            "requests", "bytes", "kicks", "interrupts", "coalesced", "redirected", "errors", "p50 us", "p99 us",
        ]
        printError("  " + "queue".padding(20) + columns.map { $0.padding(12) }.joined())
        for device in vm.devices {
            for queue in device.queues {
                let values = [
                    queue.requests, queue.bytes, queue.notifications, queue.interrupts, queue.coalesced,
                    queue.redirected, queue.errors,
                ].map { "\($0)" }
                let latency =
                    queue.latency.count == 0
                    ? ["-", "-"]
                    : [queue.latency.p50Nanoseconds, queue.latency.p99Nanoseconds].map { micros($0) }
                printError(
                    "  " + "\(device.name).\(queue.name)".padding(20)
                        + (values + latency).map { $0.padding(12) }.joined())
            }
        }
    }

    /// Nanoseconds as microseconds with one decimal.
    private static func micros(_ nanoseconds: UInt64) -> String {
        "\(nanoseconds / 1000).\(nanoseconds % 1000 / 100)"
    }

    static func print(_ vcpus: [[String: UInt64]]) {
        printError("KVM statistics per vCPU:")
        let names = summaryNames.filter { name in vcpus.contains { $0[name] != nil } }
        printError("  " + "vcpu".padding(6) + names.map { $0.padding(16) }.joined())
        for (id, values) in vcpus.enumerated() {
            printError("  " + "\(id)".padding(6) + names.map { "\(values[$0] ?? 0)".padding(16) }.joined())
        }
    }
}
