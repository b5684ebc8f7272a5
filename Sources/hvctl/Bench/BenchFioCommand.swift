import ArgumentParser
import Glibc
import Hypervisor

/// `hvctl bench fio`: the I/O path with Linux's own virtio drivers, as users run it: the Linux
/// bench guest (the default initramfs with fio and iperf3) under hvctl in each mode, under QEMU,
/// and the host's own io_uring loop, on one machine in one run. A boot per target and repeat runs
/// every load in turn (repeats interleave the targets); fio's JSON gives the rate, the mean and
/// percentiles, KVM's statistics the exits per request. It needs a host whose KVM runs guest
/// kernels natively: under PVM a Linux guest's kernel is emulated, so `benchmarks/io.sh` runs it
/// inside the nested rig.
struct BenchFio: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fio",
        abstract: "Benchmark the I/O path with a Linux guest running fio (and iperf3): hvctl against QEMU and the host."
    )

    @Option(
        help: ArgumentHelp(
            "Workloads: randread, randwrite, randrw (fio, half each), tcp-stream (iperf3 from the guest to the "
                + "TAP's host end).", valueName: "list"))
    var workload = "randread"

    @Option(help: ArgumentHelp("Request sizes: multiples of 4k from 4k to 128k, e.g. 4k,64k.", valueName: "list"))
    var bs = "4k"

    @Option(help: ArgumentHelp("Queue depths (fio's iodepth), e.g. 1,16,64 (1 to 256).", valueName: "list"))
    var qd = "1,16"

    @Option(
        name: .customLong("irq-coalesce"),
        help: ArgumentHelp(
            "hvctl's side-core modes with interrupt coalescing on, off, or both (on,off).", valueName: "list"))
    var irqCoalesce = "on"

    @Option(help: ArgumentHelp("Seconds per load (fio's runtime; iperf3's time).", valueName: "seconds"))
    var duration = 10

    @Option(help: "The guest's vCPUs.")
    var cpus = 1

    @Option(
        help: ArgumentHelp(
            "The guest's kernel (default: bzImage next to hvctl, or in guest-images/out).", valueName: "path"))
    var kernel: String?

    @Option(
        help: ArgumentHelp(
            "The guest's initrd with fio and iperf3 (default: bench-initramfs.cpio next to hvctl, or in "
                + "guest-images/out; make -C guest-images out/bench-initramfs.cpio).", valueName: "path"))
    var initrd: String?

    @OptionGroup var targetOptions: BenchTargetOptions

    func validate() throws {
        _ = try FioWorkload.parse(workload)
        _ = try BenchBlockSize.parse(bs)
        _ = try queueDepths()
        _ = try coalescingSettings()
        guard (1...3600).contains(duration) else { throw ValidationError("--duration \(duration): 1 to 3600 seconds") }
        guard (1...16).contains(cpus) else { throw ValidationError("--cpus \(cpus): 1 to 16") }
        if try FioWorkload.parse(workload).contains(where: \.isNetwork) && !BenchIperfServer.isInstalled {
            throw ValidationError(
                "--workload tcp-stream: \(BenchIperfServer.executable) is not installed (apt-get install iperf3)")
        }
        _ = try FioGuestScript.commandLine(loads: loads(), seconds: duration, iperfPort: 65535)
        if let disk = targetOptions.disk, try FioWorkload.parse(workload).contains(where: \.writes) {
            throw ValidationError(
                "--disk \(disk): fio's write workloads would overwrite it with fio's data (leave --disk out: a "
                    + "scratch file is made and removed)")
        }
    }

    func queueDepths() throws -> [Int] { try BenchList.queueDepths(qd, limit: 256) }

    func coalescingSettings() throws -> [Bool] { try BenchList.coalescing(irqCoalesce) }

    /// Every workload at every size and depth; a stream once, at iperf3's write size.
    func loads() throws -> [FioLoad] {
        let sizes = try BenchBlockSize.parse(bs)
        let depths = try queueDepths()
        return try FioWorkload.parse(workload).flatMap { workload in
            workload.isNetwork
                ? [FioLoad(workload: workload, blockSize: FioWorkload.streamWriteBytes, qd: 1)]
                : sizes.flatMap { size in depths.map { FioLoad(workload: workload, blockSize: size, qd: $0) } }
        }
    }

    func run() throws {
        let guest = FioGuest(
            kernel: try Bench.guestFile(kernel, flag: "--kernel", name: "bzImage"),
            initrd: try Bench.guestFile(initrd, flag: "--initrd", name: "bench-initramfs.cpio"), cpus: cpus)
        // Under PVM the guest's kernel is emulated: refuse before making anything.
        if HostReport(kvm: try KVM()).execution == .emulatedPVM {
            throw ValidationError(
                "this host's KVM emulates guest kernel code (PVM; hvctl check): a Linux guest's I/O path "
                    + "cannot be measured here; benchmarks/io.sh runs hvctl bench fio inside the nested rig")
        }
        let loads = try loads()
        let targets = try targetOptions.targets(coalescing: try coalescingSettings())
        let peers = try targetOptions.peers()
        let repeats = targetOptions.repeat
        let network = loads.contains { $0.workload.isNetwork }
        let report = BenchReport(environment: .current(qemu: peers.contains("qemu")), options: options(), cells: [])
        try BenchSession.run("bench fio", options: targetOptions, vms: 1, report: report) { session, report in
            // runs[target][load]: every repeat's measurement; in the report whatever ends the run.
            var runs = targets.map { _ in loads.map { _ in [BenchMeasurement]() } }
            defer {
                for (loadIndex, load) in loads.enumerated() {
                    for (targetIndex, target) in targets.enumerated() where !runs[targetIndex][loadIndex].isEmpty {
                        report.cells.append(
                            BenchReport.Cell(
                                target: target.name, workload: load.workload.label, blockSize: load.blockSize,
                                qd: load.qd, runs: runs[targetIndex][loadIndex]))
                    }
                }
            }
            repeats: for index in 0..<repeats {
                for (targetIndex, target) in targets.enumerated() {
                    if session.isInterrupted { break repeats }
                    let label = "\(target.name) run \(index + 1)/\(repeats)"
                    session.progress.show(label)
                    let server = network && !target.isHost ? try BenchIperfServer() : nil
                    defer { server?.stop() }
                    let commandLine = try FioGuestScript.commandLine(
                        loads: loads, seconds: duration, iperfPort: server?.port ?? 0)
                    // Each load as it starts, and its rate once the guest has printed it.
                    let onEvent: @Sendable (FioConsole.Event) -> Void = { event in
                        let load: Int
                        switch event {
                        case .start(let started): load = started
                        case .output(let finished, _): load = finished
                        case .go, .end: return
                        }
                        guard loads.indices.contains(load - 1) else { return }
                        let current = loads[load - 1]
                        let text =
                            "\(label): \(current.workload.label) \(BenchBlockSize.label(current.blockSize)) "
                            + "qd=\(current.qd) (\(load)/\(loads.count))"
                        guard case .output(_, let output) = event else { return session.progress.show(text) }
                        let measured = try? FioResult.measurement(output, workload: current.workload)
                        let rate = measured.map { measurement in
                            measurement.bitsPerSecond.map { "\(BenchTable.whole($0 / 1e6)) Mbit/s" }
                                ?? "\(BenchTable.whole(measurement.iops)) IOPS"
                        }
                        session.progress.show("\(text): \(rate ?? "no result")", done: true)
                    }
                    let measured: [BenchMeasurement?]
                    do {
                        switch target {
                        case .hvctl(let mode, let coalescing, let redirect):
                            measured = try BenchFioHvctlRun.measure(
                                guest: guest, disk: session.disks[0], mode: mode, coalescing: coalescing,
                                redirect: redirect,
                                sideCoreCount: targetOptions.sideCores, loads: loads, commandLine: commandLine,
                                seconds: duration, running: session.runningVMM, interrupted: session.interrupted,
                                onEvent: onEvent)
                        case .qemu(let pollMaxNanoseconds):
                            measured = try BenchFioQEMURun.measure(
                                guest: guest, disk: session.disks[0], loads: loads, commandLine: commandLine,
                                seconds: duration, pollMaxNanoseconds: pollMaxNanoseconds,
                                sideCores: targetOptions.sideCores,
                                running: session.runningChildren, interrupted: session.interrupted, onEvent: onEvent)
                        case .host:
                            measured = try hostRuns(loads, disk: session.disks[0], session: session, label: label)
                        }
                    } catch {
                        if session.isInterrupted { break repeats }
                        guard let server else { throw error }
                        server.stop()
                        throw BenchError("\(error)" + server.said)
                    }
                    for (load, measurement) in measured.enumerated() {
                        if let measurement { runs[targetIndex][load].append(measurement) }
                    }
                }
            }
        }
    }

    /// The host's own io_uring loop on the same file at each block load's size and depth (none for
    /// a stream, or on the null backend).
    private func hostRuns(_ loads: [FioLoad], disk: BenchDisk, session: BenchSession, label: String) throws
        -> [BenchMeasurement?]
    {
        guard case .file(let path, let blocks) = disk else { return loads.map { _ in nil } }
        return try loads.map { load in
            guard !session.isInterrupted, let workload = BenchWorkload(rawValue: load.workload.rawValue) else {
                return nil
            }
            let hostLoad = BenchLoad(
                workload: workload, blockSize: load.blockSize, qd: load.qd, requests: 100_000_000_000,
                durationMilliseconds: UInt64(duration) * 1000)
            // fio's writes leave its own data where the pattern was: nothing to verify against.
            let measurement = try BenchHostRun.measure(disk: path, blocks: blocks, load: hostLoad, verify: false)
            session.progress.show(
                "\(label): \(load.workload.label) \(BenchBlockSize.label(load.blockSize)) qd=\(load.qd): "
                    + "\(BenchTable.whole(measurement.iops)) IOPS", done: true)
            return measurement
        }
    }

    private func options() -> BenchReport.Options {
        let targets = targetOptions
        return BenchReport.Options(
            workloads: ((try? FioWorkload.parse(workload)) ?? []).map(\.label),
            blockSizes: (try? BenchBlockSize.parse(bs)) ?? [], qd: (try? queueDepths()) ?? [],
            modes: (try? targets.modes().map(\.rawValue)) ?? [], peers: (try? targets.peers()) ?? [],
            qemuPollMaxNanoseconds: (try? targets.qemuPollLimits()) ?? [], requests: 0,
            durationMilliseconds: UInt64(duration) * 1000, interrupts: true,
            interruptCoalescing: ((try? coalescingSettings()) ?? []).map { $0 ? "on" : "off" }, rate: nil,
            repeat: targets.repeat, disk: targets.disk ?? (targets.null ? "null" : "pattern"),
            pinning: targets.pinning(vms: 1), vms: 1, sideCores: targets.sideCores,
            interruptRedirection: ((try? targets.redirectSettings()) ?? []).map(\.rawValue))
    }
}
