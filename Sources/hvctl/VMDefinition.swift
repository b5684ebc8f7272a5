import ArgumentParser
import FoundationEssentials
import Glibc
import Hypervisor
import VirtioDevices
import VMM

/// One VM to run: what `hvctl run`'s per-VM options or one entry of `--config` describe.
struct VMDefinition: Decodable, Sendable {
    var name: String
    var kernel: String
    var initrd: String?
    var cmdline: String = Run.defaultCommandLine
    var cpus: Int = 1
    var memory: Int = 512
    /// `--disk` and `--net` option values, in the same key=value syntax.
    var disks: [String] = []
    var nets: [String] = []
    /// Where the console goes: a file, or (nil) stdout with each line prefixed by the VM's name
    /// when several VMs run.
    var console: String?

    init(name: String, kernel: String) {
        self.name = name
        self.kernel = kernel
    }

    private enum CodingKeys: String, CodingKey {
        case name, kernel, initrd, cmdline, cpus, memory, disks, nets, console
    }

    init(from decoder: Decoder) throws {
        try UnknownKeyError.check(
            decoder, known: ["name", "kernel", "initrd", "cmdline", "cpus", "memory", "disks", "nets", "console"])
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decode(String.self, forKey: .name)
        kernel = try container.decode(String.self, forKey: .kernel)
        initrd = try container.decodeIfPresent(String.self, forKey: .initrd)
        cmdline = try container.decodeIfPresent(String.self, forKey: .cmdline) ?? Run.defaultCommandLine
        cpus = try container.decodeIfPresent(Int.self, forKey: .cpus) ?? 1
        memory = try container.decodeIfPresent(Int.self, forKey: .memory) ?? 512
        disks = try container.decodeIfPresent([String].self, forKey: .disks) ?? []
        nets = try container.decodeIfPresent([String].self, forKey: .nets) ?? []
        console = try container.decodeIfPresent(String.self, forKey: .console)
    }

    /// Checks the values; `field` turns a field name into how the user wrote it ("--cpus", or
    /// "--config FILE: vm NAME: cpus"), so the message names the bad input.
    /// `label` goes before errors in its device arguments ("--config FILE: vm NAME: ", or "").
    func validate(label: String = "", field: (String) -> String) throws {
        if cpus < 1 { throw ValidationError("\(field("cpus")) \(cpus): a guest needs at least 1 vCPU") }
        if memory < 1 { throw ValidationError("\(field("memory")) \(memory): a guest needs at least 1 MiB") }
        if memory > 1 << 20 { throw ValidationError("\(field("memory")) \(memory): more than 1 TiB is not supported") }
        do {
            var ids = Set<String>()
            for disk in disks {
                let id = try DiskArgument.parse(disk).id
                guard id.isEmpty || ids.insert(id).inserted else {
                    throw ValidationError("--disk \(disk): id \(id) is given to two disks")
                }
            }
            var taps = Set<String>()
            for net in nets {
                let tap = try NetArgument.parse(net).tapName
                guard taps.insert(tap).inserted else {
                    throw ValidationError("--net \(net): TAP \(tap) serves another --net")
                }
            }
        } catch let error as ValidationError where !label.isEmpty {
            throw ValidationError(label + error.message)
        }
    }

    /// The runtime's configuration of this VM, its device arguments parsed.
    func configuration() throws -> VMConfiguration {
        let machine = MachineConfiguration(
            boot: LinuxBootConfiguration(kernelPath: kernel, initrdPath: initrd, commandLine: cmdline),
            vcpuCount: cpus, memoryInBytes: UInt64(memory) << 20)
        return VMConfiguration(
            name: name, machine: machine, disks: try disks.map(DiskArgument.parse),
            nets: try nets.map(NetArgument.parse))
    }
}

/// `--config FILE`: `{"vms": [{"name": "a", "kernel": "...", "disks": ["path=..."], ...}, ...]}`.
enum VMConfigFile {
    private struct Document: Decodable {
        let vms: [VMDefinition]

        init(from decoder: Decoder) throws {
            try UnknownKeyError.check(decoder, known: ["vms"])
            vms = try decoder.container(keyedBy: CodingKeys.self).decode([VMDefinition].self, forKey: .vms)
        }

        private enum CodingKeys: String, CodingKey { case vms }
    }

    static func load(_ path: String) throws -> [VMDefinition] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ValidationError("--config \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw ValidationError("--config \(path): \(String(cString: strerror(errno)))") }
            if count == 0 { break }
            bytes += buffer[0..<count]
            guard bytes.count <= 1 << 20 else { throw ValidationError("--config \(path): larger than 1 MiB") }
        }
        do {
            try StrictJSONSyntax.check(bytes)
        } catch {
            throw ValidationError("--config \(path): \(error.description)")
        }
        let document: Document
        do {
            document = try JSONDecoder().decode(Document.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw ValidationError("--config \(path): \(describe(error))")
        } catch let error as UnknownKeyError {
            throw ValidationError("--config \(path): \(error.path): unknown key")
        }
        guard !document.vms.isEmpty else { throw ValidationError("--config \(path): \"vms\" is empty") }
        var names = Set<String>()
        var taps: [String: String] = [:]
        for vm in document.vms {
            guard !vm.name.isEmpty, names.insert(vm.name).inserted else {
                throw ValidationError("--config \(path): vm names must be unique and non-empty ('\(vm.name)')")
            }
            try vm.validate(label: "--config \(path): vm \(vm.name): ") { "--config \(path): vm \(vm.name): \($0)" }
            // A TAP serves one device: two VMs on one would steal each other's frames.
            for net in vm.nets {
                let tap = try NetArgument.parse(net).tapName
                if let other = taps.updateValue(vm.name, forKey: tap) {
                    throw ValidationError(
                        "--config \(path): vm \(vm.name): --net \(net): TAP \(tap) serves vm \(other) too")
                }
            }
        }
        return document.vms
    }

    /// One line naming the JSON path and what was wrong there.
    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return keys.isEmpty ? "" : "\(keys): "
        }
        switch error {
        case .keyNotFound(let key, let context): return "\(path(context))missing \"\(key.stringValue)\""
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return "\(path(context))\(context.debugDescription)"
        case .dataCorrupted(let context): return "\(path(context))not valid JSON"
        @unknown default: return "not a VM configuration"
        }
    }
}
