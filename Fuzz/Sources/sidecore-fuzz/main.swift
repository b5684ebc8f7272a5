import Glibc

// libFuzzer's driver, from its runtime (linked by fuzz/run); the callback runs one input.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

/// Every target, by the name `sidecore-fuzz NAME [libFuzzer options]` takes.
let targets: [String: (UnsafeRawBufferPointer) -> Void] = [
    "virtqueue": VirtqueueTarget.run,
    "block-handler": BlockHandlerTarget.run,
    "net-queue-pair": NetQueuePairTarget.run,
    "net-control": NetControlTarget.run,
    "virtio-pci": VirtioPCITarget.run,
    "msix-table": MSIXTableTarget.run,
    "pci-ports": PCIPortsTarget.run,
    "uart": UARTTarget.run,
    "http-request": HTTPRequestTarget.run,
]

// The target comes first on the command line; it is also put in the environment, because
// libFuzzer runs itself again (merge, fork modes) with its own options only.
var arguments = CommandLine.arguments
let environmentKey = "SIDECORE_FUZZ_TARGET"
if arguments.count >= 2, targets[arguments[1]] != nil {
    setenv(environmentKey, arguments[1], 1)
    arguments.remove(at: 1)
}
guard let name = getenv(environmentKey).map({ String(cString: $0) }), let target = targets[name] else {
    let names = targets.keys.sorted().joined(separator: ", ")
    let usage = "usage: sidecore-fuzz TARGET [libFuzzer options] [CORPUS...]; targets: \(names)\n"
    _ = usage.withCString { write(STDERR_FILENO, $0, strlen($0)) }
    exit(64)
}
selectedTarget = target
var cArguments: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
var argc = Int32(arguments.count)
let status = cArguments.withUnsafeMutableBufferPointer { buffer -> Int32 in
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = buffer.baseAddress
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
        selectedTarget?(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }
}
exit(status)
