import ArgumentParser

/// `hvctl run`'s boot options: one VM's kernel, memory and devices, or `--config` for several.
struct BootOptions: ParsableArguments {
    @Option(help: "Kernel: a bzImage, or an uncompressed ELF vmlinux with a PVH entry note.")
    var kernel: String?

    @Option(help: "Initial ramdisk loaded for the kernel.")
    var initrd: String?

    @Option(help: "Kernel command line (default \"\(Run.defaultCommandLine)\").")
    var cmdline: String?

    @Option(help: "Number of vCPUs (default 1).")
    var cpus: Int?

    @Option(help: "Guest RAM in MiB, or with a K, M or G suffix (default 512).")
    var memory: MemorySize?

    @Flag(name: .customLong("memory-overcommit"), help: "Allow the VMs more memory than the host has.")
    var memoryOvercommit = false

    @Option(
        name: .customLong("disk"),
        help: ArgumentHelp(
            """
            A virtio-blk disk: path=FILE[,readonly=on][,queues=N][,queue_size=N][,backend=file|null]\
            [,size=BYTES][,id=NAME]. Repeatable.
            """,
            valueName: "options"))
    var disks: [String] = []

    @Option(
        name: .customLong("net"),
        help: ArgumentHelp(
            """
            A virtio-net device on a TAP: tap=NAME[,mac=MAC][,queues=PAIRS][,queue_size=N][,rss=on|off]. \
            Repeatable.
            """,
            valueName: "options"))
    var nets: [String] = []

    @Option(
        help: ArgumentHelp(
            """
            Run several VMs together, sharing the side cores: a JSON file {\"vms\": [{\"name\", \"kernel\", \
            \"initrd\", \"cmdline\", \"cpus\", \"memory\", \"disks\": [...], \"nets\": [...], \"console\": FILE}]}. \
            Replaces the per-VM options above; consoles go to their files or to stdout prefixed with [name].
            """,
            valueName: "file"))
    var config: String?

    func validate() throws {
        if config != nil {
            let given = [
                ("--kernel", kernel != nil), ("--initrd", initrd != nil), ("--cmdline", cmdline != nil),
                ("--cpus", cpus != nil),
                ("--memory", memory != nil), ("--disk", !disks.isEmpty), ("--net", !nets.isEmpty),
            ].filter(\.1).map(\.0)
            if let first = given.first {
                throw ValidationError("\(first): not with --config (describe each VM in the file)")
            }
        } else {
            guard kernel != nil else { throw ValidationError("--kernel: missing (or give --config)") }
            try commandLineVM().validate { "--\($0)" }
        }
    }

    /// The VM the per-VM options describe.
    func commandLineVM() -> VMDefinition {
        var vm = VMDefinition(name: "vm0", kernel: kernel ?? "")
        vm.initrd = initrd
        vm.cmdline = cmdline ?? Run.defaultCommandLine
        vm.cpus = cpus ?? 1
        vm.memory = memory?.mebibytes ?? 512
        vm.disks = disks
        vm.nets = nets
        return vm
    }
}
