import Hypervisor
import VirtioDevices

/// `GET /api/v1/vm.info`: a VM's configuration as it runs, and its state.
struct VMInfo: Encodable {
    struct Disk: Encodable {
        let name: String
        let id: String
        let path: String?
        let backend: String
        let readonly: Bool
        let queues: Int
        let queueSize: UInt16
    }

    struct Net: Encodable {
        let name: String
        let tap: String
        let mac: String
        let queuePairs: Int
        let queueSize: UInt16
    }

    let name: String
    /// running or paused.
    let state: String
    let vcpus: Int
    let memoryBytes: UInt64
    let kernel: String
    let initrd: String?
    let cmdline: String
    let ioMode: String
    let disks: [Disk]
    let nets: [Net]

    init(_ vm: VMInstance, ioMode: String) {
        let configuration = vm.configuration
        name = configuration.name
        state = vm.isPaused ? "paused" : "running"
        vcpus = configuration.machine.vcpuCount
        memoryBytes = configuration.machine.memoryInBytes
        kernel = configuration.machine.boot.kernelPath
        initrd = configuration.machine.boot.initrdPath
        cmdline = configuration.machine.boot.commandLine
        self.ioMode = ioMode
        disks = configuration.disks.enumerated().map { index, disk in
            Disk(
                name: "blk\(index)", id: disk.id, path: disk.path, backend: disk.backend.rawValue,
                readonly: disk.readOnly, queues: disk.queueCount, queueSize: disk.queueSize)
        }
        nets = configuration.nets.enumerated().map { index, net in
            Net(
                name: "net\(index)", tap: net.tapName,
                mac: net.mac.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: ":"),
                queuePairs: net.queuePairs, queueSize: net.queueSize)
        }
    }
}

/// `GET /api/v1/vmm.ping`.
struct PingReply: Encodable {
    let version: String
    let apiVersion: String
    let pid: Int32
    let features: [String]
    let vms: [String]
}
