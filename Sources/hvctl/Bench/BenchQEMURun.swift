import FoundationEssentials
import Glibc
import Hypervisor

/// `--peer qemu`: QEMU 7.2 (Debian's) running the same iobench guest on the same file, the disk
/// on an iothread with `aio=io_uring` and its adaptive polling (`poll-max-ns`, QEMU's default
/// unless given). `-arch-capabilities`: QEMU 7.2 cannot set that MSR on this host's KVM (PVM) and
/// stops; nothing on the I/O path reads it.
enum BenchQEMURun {
    static let executable = "/usr/bin/qemu-system-x86_64"

    static var isInstalled: Bool { access(executable, X_OK) == 0 }

    /// QEMU's version line, for the environment record.
    static func version() -> String? {
        guard isInstalled, let output = try? BenchProcess.run(executable, ["--version"]) else { return nil }
        return output.split(whereSeparator: \.isNewline).first.map(String.init)
    }

    static func measure(
        guest: String, disk: BenchDisk, qd: Int, requests: UInt64, pollMaxNanoseconds: UInt64?,
        running: Lock<Int32?>, interrupted: Lock<Int32?>
    ) throws -> BenchMeasurement {
        let drive: String
        switch disk {
        case .file(let path, _): drive = "file=\(path),if=none,id=d0,format=raw,aio=io_uring,readonly=on"
        case .null(let bytes): drive = "file=null-co://,size=\(bytes),if=none,id=d0,format=raw"
        }
        let verify: String
        if case .null = disk { verify = " verify=0" } else { verify = "" }
        let iothread = "iothread,id=io0" + (pollMaxNanoseconds.map { ",poll-max-ns=\($0)" } ?? "")
        let arguments = [
            "-enable-kvm", "-cpu", "host,-arch-capabilities", "-m", "256", "-display", "none", "-no-reboot",
            "-nodefaults", "-serial",
            "stdio", "-kernel", guest, "-append", "qd=\(qd) requests=\(requests) hold_ms=20\(verify)",
            "-object", iothread, "-drive", drive, "-device", "virtio-blk-pci,drive=d0,iothread=io0",
        ]
        let output = try BenchProcess.run(executable, arguments, running: running, interrupted: interrupted)
        if let error = output.split(whereSeparator: \.isNewline).first(where: { $0.contains("iobench: error") }) {
            throw BenchError("the iobench guest failed under QEMU: \(error)")
        }
        guard
            let result = output.split(whereSeparator: \.isNewline).lazy.compactMap({ IOBenchResult(line: String($0)) })
                .first
        else {
            throw BenchError("QEMU ended without the guest's result: \(output.suffix(300))")
        }
        return result.measurement
    }
}
