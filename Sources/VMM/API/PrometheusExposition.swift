import VirtioDevices

/// The statistics in Prometheus' text exposition format (version 0.0.4) for `GET /metrics`.
/// Every metric is `sidecore_`-prefixed, counters end in `_total`, times are in seconds, and
/// VMs, devices, queues and side cores are labels.
enum PrometheusExposition {
    static func render(_ report: StatisticsReport, paused: [String: Bool]) -> String {
        var families: [Family] = []
        func family(_ name: String, _ type: String, _ help: String) -> Int {
            if let index = families.firstIndex(where: { $0.name == name }) { return index }
            families.append(Family(name: name, type: type, help: help))
            return families.count - 1
        }
        func add(_ name: String, _ type: String, _ help: String, _ labels: [(String, String)], _ value: Double) {
            families[family(name, type, help)].samples.append((labels, value))
        }

        add("sidecore_uptime_seconds", "gauge", "Seconds since the VMs were built.", [], report.uptimeSeconds)
        for vm in report.vms {
            let vmLabel = [("vm", vm.name)]
            add(
                "sidecore_vm_paused", "gauge", "1 while the VM is paused through the API.", vmLabel,
                paused[vm.name] == true ? 1 : 0)
            for vcpu in vm.vcpus {
                // KVM's own binary statistics, one family per statistic (names differ across kernels).
                for (stat, value) in vcpu.kvm.sorted(by: { $0.key < $1.key }) where isMetricName(stat) {
                    // Prometheus names times in seconds: KVM's `_ns` statistics are converted.
                    let (name, scaled) =
                        stat.hasSuffix("_ns")
                        ? (String(stat.dropLast(3)) + "_seconds", Double(value) / 1e9) : (stat, Double(value))
                    add(
                        "sidecore_kvm_vcpu_\(name)", "untyped", "KVM's per-vCPU statistic \(stat).",
                        vmLabel + [("vcpu", "\(vcpu.id)")], scaled)
                }
            }
            for device in vm.devices {
                let deviceLabels = vmLabel + [("device", device.name), ("type", device.type)]
                add(
                    "sidecore_device_errors_total", "counter",
                    "Device errors (a ring the driver broke, a failed activation).",
                    deviceLabels, Double(device.deviceErrors))
                for queue in device.queues {
                    let labels = deviceLabels + [("queue", queue.name)]
                    let counters: [(String, String, UInt64)] = [
                        ("requests", "Requests completed.", queue.requests),
                        ("bytes", "Bytes moved by completed requests.", queue.bytes),
                        ("kicks", "Guest notifications (kicks) received.", queue.notifications),
                        ("interrupts", "Interrupts sent to the guest.", queue.interrupts),
                        ("interrupts_coalesced", "Completions whose interrupt was held and merged.", queue.coalesced),
                        (
                            "interrupts_redirected", "Interrupts sent to a vCPU other than the driver's.",
                            queue.redirected
                        ),
                        ("errors", "Requests that failed or were malformed.", queue.errors),
                        ("flushes", "Flush requests.", queue.flushes),
                        ("completion_batches", "Used-ring publications.", queue.completionBatches),
                    ]
                    for (name, help, value) in counters {
                        add("sidecore_queue_\(name)_total", "counter", help, labels, Double(value))
                    }
                    let histogram = "sidecore_queue_request_duration_seconds"
                    let help =
                        "Each request's time in the device: block requests and transmitted frames from the "
                        + "available ring to the used ring, received frames from the TAP to the used ring."
                    let index = family(histogram, "histogram", help)
                    for (bound, count) in latencyHistogram(queue.latencyBuckets) {
                        families[index].suffixed.append(("_bucket", labels + [("le", bound)], Double(count)))
                    }
                    families[index].suffixed.append(("_sum", labels, Double(queue.latencyBuckets.sum) / 1e9))
                    families[index].suffixed.append(("_count", labels, Double(queue.latencyBuckets.requests)))
                }
            }
        }
        for core in report.sideCores {
            let labels = [("core", core.name)]
            add(
                "sidecore_side_core_active", "gauge", "1 while the side core serves queues.", labels,
                core.active ? 1 : 0)
            add(
                "sidecore_side_core_busy_seconds_total", "counter",
                "Time in poll rounds that found work (yields and sleeps excluded).", labels,
                Double(core.busyNanoseconds) / 1e9)
            add(
                "sidecore_side_core_idle_seconds_total", "counter",
                "Time in poll rounds that found none (yields and sleeps excluded).", labels,
                Double(core.idleNanoseconds) / 1e9)
            if let cpu = core.cpuNanoseconds {
                add(
                    "sidecore_side_core_cpu_seconds_total", "counter", "The side core thread's CPU time.", labels,
                    Double(cpu) / 1e9)
            }
            add(
                "sidecore_side_core_sleeps_total", "counter", "Times the side core slept waiting for a kick.", labels,
                Double(core.sleeps))
            for handler in core.handlers {
                let handlerLabels = labels + [("queue", handler.name)]
                add(
                    "sidecore_side_core_polls_total", "counter", "Polls of a queue.", handlerLabels,
                    Double(handler.polls))
                add(
                    "sidecore_side_core_productive_polls_total", "counter", "Polls of a queue that found work.",
                    handlerLabels, Double(handler.productivePolls))
            }
        }
        if let iocm = report.iocm {
            add(
                "sidecore_iocm_automatic", "gauge", "1 while the I/O core manager chooses the side-core count.", [],
                iocm.automatic ? 1 : 0)
            add(
                "sidecore_iocm_resizes_total", "counter", "Side-core count changes made by the I/O core manager.", [],
                Double(iocm.resizes))
        }
        return families.map(\.text).joined()
    }

    /// Cumulative bucket counts at powers of two from 2^10 ns (about 1 µs) to 2^30 ns (about 1 s),
    /// then +Inf: each bound falls between `LatencyBuckets`' buckets, so every count is exact.
    static func latencyHistogram(_ snapshot: LatencyBuckets.Snapshot) -> [(String, UInt64)] {
        var result: [(String, UInt64)] = []
        for power in 10...30 {
            let bound = UInt64(1) << UInt64(power)
            let below = snapshot.counts.enumerated().reduce(UInt64(0)) {
                LatencyBuckets.lowerBound(of: $1.offset) < bound ? $0 + $1.element : $0
            }
            result.append(("\(Double(bound) / 1e9)", below))
        }
        result.append(("+Inf", snapshot.requests))
        return result
    }

    private struct Family {
        let name: String
        let type: String
        let help: String
        var samples: [([(String, String)], Double)] = []
        /// A histogram's `_sum` and `_count` samples.
        var suffixed: [(String, [(String, String)], Double)] = []

        var text: String {
            var text = "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for (labels, value) in samples {
                let rendered =
                    labels.isEmpty
                    ? "" : "{" + labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
                text += "\(name)\(rendered) \(format(value))\n"
            }
            for (suffix, labels, value) in suffixed {
                let rendered = "{" + labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",") + "}"
                text += "\(name)\(suffix)\(rendered) \(format(value))\n"
            }
            return text
        }
    }

    /// A label value with backslash, double quote and newline escaped, as the format asks.
    static func escape(_ value: String) -> String {
        var escaped = ""
        for character in value {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    /// Whole numbers without a fraction, so counters read as integers. Compared through Int64, not
    /// `rounded()`: that calls libm's round, another window of libm's pages kept resident.
    private static func format(_ value: Double) -> String {
        if abs(value) < 1e15, Double(Int64(value)) == value { return String(Int64(value)) }
        return "\(value)"
    }

    private static func isMetricName(_ name: String) -> Bool {
        !name.isEmpty
            && name.utf8.allSatisfy {
                $0 == UInt8(ascii: "_") || (48...57).contains($0) || (97...122).contains($0) || (65...90).contains($0)
            }
    }
}
