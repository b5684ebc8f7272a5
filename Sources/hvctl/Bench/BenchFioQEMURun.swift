import Glibc
import Hypervisor

/// One boot of the Linux bench guest under QEMU: the disk on an iothread with `aio=io_uring` (as
/// `--peer qemu` has it for iobench), KVM's exits read through QEMU's monitor at each load's go and
/// end marks (a monitor round trip after the mark: the I/O may have begun at go; the guest idles
/// after end), QEMU's threads pinned as hvctl's are.
enum BenchFioQEMURun {
    static func measure(
        guest: FioGuest, disk: BenchDisk, loads: [FioLoad], commandLine: String, seconds: Int,
        pollMaxNanoseconds: UInt64?,
        sideCores: Int, running: Lock<Set<Int32>>, interrupted: Lock<Int32?>,
        onEvent: @escaping (FioConsole.Event) -> Void
    ) throws -> [BenchMeasurement] {
        let network = loads.contains { $0.workload.isNetwork }
        let tap = BenchTAP.name(for: "q")
        let machine =
            [
                "-smp", "\(guest.cpus)", "-m", "\(FioGuest.memoryMiB)", "-kernel", guest.kernel, "-initrd",
                guest.initrd, "-append", commandLine,
            ]
            + BenchQEMURun.diskArguments(
                disk, readOnly: !loads.contains { $0.workload.writes }, pollMaxNanoseconds: pollMaxNanoseconds)
            + (network ? BenchQEMURun.netArguments(tap: tap) : [])
        var boot = FioBoot()
        var lastWasMark = false
        let watchdog = try FioWatchdog(loadSeconds: seconds) { _ in
            for pid in running.withLock({ $0 }) { kill(pid, SIGKILL) }
        }
        let (_, samples) = try watchdog.guarding(consoleEnd: { boot.consoleEnd }) {
            try BenchQEMURun.run(
                machine: machine, tap: network ? tap : nil, guestSpeaksARP: true, placement: (0, 1, sideCores),
                running: running,
                interrupted: interrupted,
                onLine: { line in
                    let event = boot.take(line)
                    if let event {
                        watchdog.note(event, loads: loads)
                        onEvent(event)
                    }
                    switch event {
                    case .go, .end: lastWasMark = true
                    default: lastWasMark = false
                    }
                }, isMark: { _ in lastWasMark })
        }
        var measurements = try boot.measurements(loads, who: "QEMU")
        guard samples.count == 2 * loads.count else {
            throw BenchError("QEMU's monitor was read at \(samples.count) of \(2 * loads.count) marks")
        }
        for index in measurements.indices {
            let exits = samples[2 * index + 1].exits &- samples[2 * index].exits
            measurements[index].exitsPerRequest = Double(exits) / Double(max(measurements[index].requests, 1))
        }
        return measurements
    }
}
